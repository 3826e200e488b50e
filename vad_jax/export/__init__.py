"""A trained run's predict function as a serialised `jax.export` artefact (StableHLO + the
weights as constants): `python -m vad_jax.export --workdir=RUN --out=FILE`; `standalone.py`
loads and runs it with only jax and numpy."""
