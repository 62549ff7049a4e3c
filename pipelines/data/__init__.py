"""The data layer, shared by every node that samples prompts: count the rows of JSON/JSONL/Parquet files and
Hugging Face datasets, draw a seeded sample by per-dataset percentage, read and check only the rows drawn, and
build prompt rows within the token budget. Entry points: :func:`pipelines.data.sampling.sample_datasets` and
:func:`pipelines.data.summary.inspect_datasets`."""
