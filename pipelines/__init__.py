"""Config-driven pipelines; see README.md."""
