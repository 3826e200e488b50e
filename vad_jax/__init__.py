"""vad_jax: video anomaly detection in JAX/Flax."""
