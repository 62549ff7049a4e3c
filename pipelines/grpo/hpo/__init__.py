"""Evolutionary hyperparameter search over a population of LoRA adapters (the ``grpo_hpo`` node)."""
