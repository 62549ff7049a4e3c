"""Augmentoolkit GRPO configs run unchanged (compat: augmentoolkit): both shapes Augmentoolkit ships, in our own
text, with the model replaced by builtin:tiny, the data paths pointed at local files and a local judge, validate
with exit 0 (the summary shows the effective values), then train 2 steps on CPU. The super-config names the node
`grpo-rl-pipeline`, as Augmentoolkit's does; the files are laid out as there (inputs/, prompts/evaluation_prompts/,
relative to the working directory)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.common.io import read_jsonl
from pipelines.grpo.compat import normalise
from pipelines.runner import main
from tests.grpo.training_runs import STEP_KEY, tiny_cache  # noqa: F401 - fixture
from tests.judge_server import JudgeServer, Reply

TAGS = ["warmth", "texture", "craft", "defiance", "spark", "thinking_room"]
RUBRIC = """- role: user
  content: |
    Rate how human and emotionally alive this reply is. Each category is 0, 0.5 or 1:
    <warmth>, <texture>, <craft>, <defiance>, <spark>, <thinking_room> (does the thinking differ from the reply?).
    Finally <sensible>0 or 1</sensible>: does it make sense at all?

    The person said: {input_text}
    The AI wrote: {output_text}
"""
SYSTEM = ("You are a vivid, emotional character talking with a person. Think first, after \"Thinking:\", then "
          "answer after \"Reply:\", then write **End.** Be bold, informal and kind; never sound like a manual.")
# The custom template of Augmentoolkit's shipped configs, in our own words: a BOS, one line per turn ended by a
# marker, and a generation prompt that prefills the start of the reasoning.
TEMPLATE = ("{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
            "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'system') %}"
            "{{'Setup: ' + message['content'] + ' **End.**' + '\\n'}}{% elif (message['role'] == 'user') %}"
            "{{'Person: ' + message['content'] + ' **End.**' + '\\n'}}{% elif message['role'] == 'assistant' %}"
            "{{'Bot: ' + message['content'] + ' **End.**' + '\\n'}}{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}{{ 'Bot: Thinking:\\n' }}{% endif %}")
TRAINING = """training_parameters:
  learning_rate: 0.000005
  adam_beta1: 0.9
  adam_beta2: 0.99
  weight_decay: 0.1
  warmup_ratio: 0.1
  lr_scheduler_type: "cosine"
  optim: "paged_adamw_8bit"
  per_device_train_batch_size: 1
  gradient_accumulation_steps: 1
  num_generations: 6
  max_prompt_length: 4000
  max_completion_length: 2500
  max_steps: 500
  save_steps: 100
  save_total_limit: 7
  save_strategy: "steps"
  max_grad_norm: 0.1
  output_dir: "{output_dir}"
  chat_template: {template} # a name like chatml works too
  model_stop_sequences: ["**End.**", "Person:", "Bot:"]

model:
  base_model_name: builtin:tiny # a Hugging Face id in real use
  lora_rank: 64
  lora_alpha: 128
  max_seq_length: 5000
  gpu_memory_utilization: 0.7

reward:
  high_scoring_save_path: high_scoring_examples.jsonl
  score_save_threshold: 2.0
  combination_function: "sum"  # post_processors decides, as in Augmentoolkit
  scaling_function: "none"
"""
SCORES = "\n".join(f"""        - type: score
          name: {t}
          min: 0
          max: 1""" for t in TAGS) + """
        - type: autofail
          name: sensible"""


def judged_dataset(path: str, percentage: str, url: str, cot: bool, reward_level_judge: bool) -> str:
    """A dataset entry as Augmentoolkit writes it: judge settings on the dataset (and maybe on the reward)."""
    pct = f"    percentage: {percentage}\n" if percentage else ""
    markers = '        cot_start: "Thinking:"\n        cot_end: "Reply:"\n' if cot else ""
    judge = (f"        eval_llm_name: test-judge\n        eval_llm_base_url: {url}\n"
             "        eval_llm_api_key: ${ATK_JUDGE_KEY}\n        eval_llm_mode: api\n") if reward_level_judge else ""
    return f"""  - path: {path}
{pct}    system_prompt: |
      {SYSTEM}
    single_turn_ratio: 0.7
    force_single_turn: false
    eval_llm_name: test-judge # per dataset, as in Augmentoolkit
    eval_llm_base_url: {url}
    eval_llm_api_key: ${{ATK_JUDGE_KEY}}
    reward_funcs:
      - name: generic_llm_reward
{markers}        system_prompt_path: prompts/evaluation_prompts/emotion.yaml
{judge}        format_score: 0.1
        score_types:
{SCORES}
"""


def shape_config_yaml(url: str) -> str:
    """The shape of Augmentoolkit's config.yaml: a judged dataset (judge settings on the dataset only, no CoT
    markers, as its comment allows) plus a length reward, a second dataset whose reward_funcs is a single mapping
    and which has no percentage, output_dir `outputs`, the chat template given by name."""
    head = "pipeline: grpo-rl \n\nno_flatten:\n  - datasets\n\n# Training parameters\n"
    body = TRAINING.format(output_dir="outputs", template="chatml")
    datasets = "datasets:\n" + judged_dataset("inputs/chats.json", "1.0", url, cot=False, reward_level_judge=False)
    datasets += """      - name: length_target
        ideal_length: 2000
        normalize: true
        weight: 1.3
  - path: inputs/grpo_rl/generic/math.json # a dataset with its own reward
    reward_funcs:
      name: answer_match
"""
    tail = ("\ndataset_settings:\n  total_rows: 1000\n\npost_processors:\n  reward_combination_function: \"sum\"\n"
            "  reward_scaling_function: \"identity\"")
    return head + body + "\n" + datasets + tail


def shape_emotional_alignment(url: str) -> str:
    """The shape of Augmentoolkit's example_emotional_alignment.yaml: four judged datasets with percentages
    1, 1, 0.2, 1 (they sum to 3.2), judge settings on the datasets and the rewards, CoT markers, the custom
    template with a prefilled reasoning start, commented-out entries between the sections."""
    head = "pipeline: grpo-rl \n\nno_flatten:\n  - datasets\n\n# Training parameters\n"
    body = TRAINING.format(output_dir="outputs/grpo_alignment", template=json.dumps(TEMPLATE))
    datasets = "datasets:\n" + "".join(
        judged_dataset(f"inputs/hidden_grpo/{name}", pct, url, cot=True, reward_level_judge=True)
        for name, pct in (("a.json", "1.0"), ("b.json", "1.0"), ("c.jsonl", "0.2"), ("d.jsonl", "1.0")))
    tail = ("\ndataset_settings:\n  total_rows: 1000\n  # - path: inputs/grpo_rl/generic/math.json\n"
            "  #   reward_funcs:\n  #     name: answer_match\npost_processors:\n  reward_combination_function: \"sum\"\n"
            "  reward_scaling_function: \"identity\" # a trailing comment")
    return head + body + "\n" + datasets + tail


def sharegpt_rows(n: int, topic: str) -> list[dict]:
    return [{"conversations": [{"from": "human", "value": f"Tell me how you feel about {topic} number {i}."},
                               {"from": "gpt", "value": f"Thinking: hmm {i}\nReply: I love {topic}!"},
                               {"from": "human", "value": "Why?"},
                               {"from": "gpt", "value": "Reply: It makes me smile."}]} for i in range(n)]


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps(rows), encoding="utf-8")


class Judge:
    """Answers every score tag with 1 and counts what it was shown."""

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, req) -> Reply:
        self.seen.append(req.text)
        return Reply(content="".join(f"<{t}>1</{t}>" for t in TAGS) + "<sensible>1</sensible>")


@pytest.fixture
def workspace(tmp_path, tiny_cache, monkeypatch, caplog):  # noqa: F811 - fixture
    """A working folder laid out as Augmentoolkit's: inputs/, prompts/evaluation_prompts/, outputs/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATK_JUDGE_KEY", "sk-atk-secret-77")
    caplog.set_level(logging.INFO)
    for child in tiny_cache.iterdir():
        if child.name.startswith("tiny-"):
            shutil.copytree(child, tmp_path / "outputs" / ".cache" / child.name)
    rubric = tmp_path / "prompts/evaluation_prompts/emotion.yaml"
    rubric.parent.mkdir(parents=True)
    rubric.write_text(RUBRIC, encoding="utf-8")
    write_rows(tmp_path / "inputs/chats.json", sharegpt_rows(6, "rain"))
    math_rows = [{"conversations": [{"from": "human", "value": f"What is {i} + {i}?"},
                                    {"from": "gpt", "value": f"<answer>{2 * i}</answer>"}]} for i in range(4)]
    write_rows(tmp_path / "inputs/grpo_rl/generic/math.json", math_rows)
    for name, topic in (("a.json", "cats"), ("b.json", "tea"), ("c.jsonl", "trains"), ("d.jsonl", "snow")):
        write_rows(tmp_path / "inputs/hidden_grpo" / name, sharegpt_rows(5, topic))
    (tmp_path / "super_config.yaml").write_text(
        "pipeline_order:\n  - node: grpo-rl-pipeline\n    config: grpo.yaml\n", encoding="utf-8")
    return tmp_path


def runs(folder: Path) -> list[Path]:
    return [p for p in (folder / "outputs").iterdir() if (p / "metrics.jsonl").exists()]


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["config_yaml", "emotional_alignment"])
def test_augmentoolkit_config_validates_then_trains_two_steps(workspace, capsys, shape):
    judge = Judge()
    with JudgeServer(judge) as srv:
        text = (shape_config_yaml if shape == "config_yaml" else shape_emotional_alignment)(srv.base_url)
        (workspace / "grpo.yaml").write_text(text, encoding="utf-8")
        assert main(["--validate"]) == 0
        summary = capsys.readouterr().out
        assert "per_device_train_batch_size: 1 x gradient_accumulation_steps 1 x processes 1 is not a multiple" \
               " of num_generations 6: raised to 6" in summary
        assert "effective: compat augmentoolkit; per_device_train_batch_size 6" in summary
        assert "each completion stops where prompt + completion reach 5000 tokens" in summary
        assert "'paged_adamw_8bit' needs bitsandbytes" in summary and "optim adamw_torch" in summary
        assert "note: pipeline: grpo-rl: accepted and ignored" in summary and "note: no_flatten: ignored" in summary
        assert "combination sum, scaling identity" in summary and "steps: 500 (max_steps" in summary
        assert "sk-atk-secret-77" not in summary
        if shape == "emotional_alignment":
            assert "percentages 1, 1, 0.2, 1 sum to 3.2; divided by their sum as Augmentoolkit does: 0.3125, " \
                   "0.3125, 0.0625, 0.3125 (rows of total_rows 1000: 313, 313, 63, 313)" in summary
            assert "warning: reward.scaling_function" not in summary          # none == identity
        else:
            assert "datasets[1].reward_funcs: a single mapping" in summary
            assert "datasets[1].percentage: missing: 1.0" in summary
            assert "datasets[0].eval_llm_base_url: inherited by reward_funcs[0] (generic_llm_reward)" in summary
            assert "output_dir: 'outputs' is the folder of all runs" in summary
        # 2 steps; 24 new tokens instead of 2500 keep it to seconds on a shared CPU (the tiny model rarely ends a
        # completion: 2500 tokens x 6 completions take minutes here). The file itself is as validated above.
        assert main(["--set", "training_parameters.max_steps=2",
                     "--set", "training_parameters.max_completion_length=24"]) == 0
    (run,) = runs(workspace)
    if shape == "emotional_alignment":
        assert run == workspace / "outputs/grpo_alignment"
    steps = [r for r in read_jsonl(run / "metrics.jsonl") if STEP_KEY in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert (run / "final_adapter" / "adapter_config.json").exists()
    tokenizer_config = json.loads((run / "final_adapter" / "tokenizer_config.json").read_text())
    template = (run / "final_adapter" / "chat_template.jinja").read_text() if (
        run / "final_adapter" / "chat_template.jinja").exists() else tokenizer_config.get("chat_template", "")
    assert ("<|im_start|>" in template) if shape == "config_yaml" else ("Bot: Thinking:" in template)
    judged = [k for k in steps[0] if "/judge/emotion/" in k]
    assert judged, "the judge's metrics reach metrics.jsonl"
    if shape == "config_yaml":
        assert judge.seen, "the dataset-level judge settings reached the reward: the local judge was asked"
    else:   # random completions never have the Thinking/Reply format: scored 0.0 without a call
        assert sum(r[next(k for k in r if k.endswith("/judge/emotion/prechecked"))] for r in steps) > 0


def test_strict_mode_refuses_the_same_config(workspace, capsys):
    text = shape_config_yaml("http://127.0.0.1:9/v1").replace("pipeline: grpo-rl \n", "compat: strict\n", 1)
    text = text.replace('output_dir: "outputs"', 'output_dir: "outputs/strict"')   # (checked before the rest)
    (workspace / "grpo.yaml").write_text("pipeline: grpo-rl\n" + text, encoding="utf-8")
    assert main(["--validate"]) == 2
    err = capsys.readouterr().err
    assert "pipeline: Augmentoolkit's key, refused with compat: strict" in err
    for key in ("no_flatten: Augmentoolkit's key", "post_processors: Augmentoolkit's key",
                "datasets[1].reward_funcs", "datasets[1].percentage", "training_parameters.num_generations",
                "model.max_seq_length"):
        assert key in err, key


def test_normalise_is_idempotent_and_leaves_strict_configs_alone():
    raw = yaml.safe_load(shape_emotional_alignment("http://127.0.0.1:9/v1"))
    once, notices, problems = normalise(raw, "c.yaml")
    assert problems == [] and notices and once["compat"] == "augmentoolkit" and "post_processors" not in once
    twice, more, _ = normalise(once, "c.yaml")
    assert twice == once and [str(n) for n in more] == [str(n) for n in notices if "max_seq_length" in n.key]
    strict = {"model": {"base_model_name": "x"}, "datasets": [{"path": "p", "reward_funcs": {"name": "keyword"}}]}
    assert normalise(strict, "c.yaml") == (strict, [], [])
    assert normalise({"compat": "bogus", "no_flatten": []}, "c.yaml")[2] == []      # the schema refuses `bogus`


def test_unknown_pipeline_value_and_post_processor_key_are_problems():
    raw = {"pipeline": "sft", "post_processors": {"reward_combination_fn": "sum"}}
    _, _, problems = normalise(raw, "c.yaml")
    assert {p.key for p in problems} == {"pipeline", "post_processors.reward_combination_fn"}
    assert 'did you mean "reward_combination_function"' in str(problems[1]) or \
           'did you mean "reward_combination_function"' in str(problems[0])


def test_seed_names_node_alias_and_scaling_none():
    from pipelines.registry import get_node
    from pipelines.rewards.catalog import scalings

    assert get_node("grpo-rl-pipeline") is get_node("grpo")
    assert scalings().get("none") is scalings().get("identity")
