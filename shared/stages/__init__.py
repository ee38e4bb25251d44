"""The pipeline's stages, each a plain function over small inputs: scan, validate, gate,
references, combine, verify, register; incremental planning; the run report; a dataset's
release operations."""
