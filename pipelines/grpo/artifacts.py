"""Names of what the GRPO-family nodes write into a run dir, and the metric keys several modules read."""

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
REWARD_CURVE = "reward_curve.png"
FINAL_ADAPTER = "final_adapter"
EVAL_REWARD_KEY = "eval/reward_mean"     # mean combined reward on held-out prompts (the HPO fitness)
TRL_REWARD_NAME = "reward_stack"         # the name TRL gives the stack's callable in its `rewards/<name>/` keys
