"""The LLM judge reward (``llm_judge``, alias ``generic_llm_reward``): a YAML rubric sent to any
OpenAI-compatible endpoint, with retries, a circuit breaker, a cache and metrics."""
