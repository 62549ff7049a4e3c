"""The LLM judge rewards: ``llm_judge`` (our stricter scoring) and ``generic_llm_reward`` (Augmentoolkit's
scoring). A YAML rubric is sent to any OpenAI-compatible endpoint, with retries, a circuit breaker and metrics."""
