"""Prepare a raw dataset once into ArrayRecord (`python -m vad_jax.prepare DATASET ...`):
`raw` finds the files of each dataset under the user's folder, `builder` decodes and writes."""
