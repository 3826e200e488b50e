"""Boxes of the grid detector (seed 004): grid target assignment and decoding, and NMS.
Pure jax.numpy functions of arrays; boxes are normalised (x0, y0, x1, y1) in [0, 1]."""
