"""The data layer, shared by every node that samples prompts: scan JSON/JSONL/Parquet inputs, sample rows by
per-dataset percentage with the run's seed, and build prompt rows within the token budget. Entry points:
:func:`pipelines.data.sampling.sample_datasets` and :func:`pipelines.data.summary.inspect_datasets`."""
