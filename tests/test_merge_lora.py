"""cli_utils.merge_lora on the tiny model: a real PEFT adapter with non-zero weights, merged and reloaded."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_utils import merge_lora as ml

REPO = Path(__file__).resolve().parents[1]
ADAPTER_TEMPLATE = ("{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }}\n{% endfor %}"
                    "{% if add_generation_prompt %}[assistant] {% endif %}")


def make_adapter(base_dir: Path, out: Path, seed: int = 1, target_modules=None) -> Path:
    """A LoRA adapter on ``base_dir`` whose lora_B is random (not PEFT's all-zero init), saved with a tokenizer
    carrying a chat template different from the base's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=target_modules or ["q_proj", "v_proj", "up_proj"],
                     task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    model.save_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    tok.chat_template = ADAPTER_TEMPLATE
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "final_adapter")


def probe_logits(model, tok):
    import torch

    ids = tok(tok.apply_chat_template(ml.PROBE_MESSAGES, tokenize=False, add_generation_prompt=True),
              return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        return model(**ids).logits.float()


def test_round_trip_logits_and_chat_template(tiny_model_dir, adapter_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    report = ml.merge_lora(str(tiny_model_dir), adapter_dir, out, dtype="fp32")
    assert report.tokenizer_source == "adapter"
    assert report.max_abs_diff <= report.tolerance < 1e-2
    assert report.adapter_effect > 0.1          # the adapter really changes the model

    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.chat_template == ADAPTER_TEMPLATE   # from the adapter folder, not the base's ChatML
    assert not any("lora" in name for name, _ in merged.named_parameters())

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    base_logits = probe_logits(base, tok)
    reference = probe_logits(PeftModel.from_pretrained(base, str(adapter_dir)).eval(), tok)
    got = probe_logits(merged, tok)
    assert torch.allclose(got, reference, atol=1e-4, rtol=1e-4)
    assert (got - base_logits).abs().max() > 0.1


def test_builtin_tiny_cli_and_bf16(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    from pipelines.common.tiny_model import TINY_SEED, TINY_VERSION

    monkeypatch.chdir(tmp_path)
    cached = tmp_path / "outputs" / ".cache" / f"tiny-{TINY_VERSION}-seed{TINY_SEED}"
    shutil.copytree(tiny_model_dir, cached)    # what builtin:tiny resolves to (the build is deterministic)
    adapter = make_adapter(cached, tmp_path / "adapter")
    rc = ml.main(["--base-model", "builtin:tiny", "--adapter", str(adapter), "--output", "merged", "--dtype", "bf16"])
    assert rc == 0, capsys.readouterr().err
    assert "probe check: max |merged - (base + adapter)|" in capsys.readouterr().out
    merged = AutoModelForCausalLM.from_pretrained("merged")
    assert merged.dtype == torch.bfloat16
    # Refuses to overwrite a non-empty output unless asked.
    assert ml.main(["--base-model", "builtin:tiny", "--adapter", str(adapter), "--output", "merged"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert ml.main(["--base-model", "builtin:tiny", "--adapter", str(adapter), "--output", "merged",
                    "--overwrite", "--dtype", "fp32"]) == 0
    assert AutoModelForCausalLM.from_pretrained("merged").dtype == torch.float32


def _other_base(tmp_path: Path, name: str, **overrides) -> Path:
    """A Qwen2 model unlike the tiny one (other hidden size or layer count), saved under ``name``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=256)
    cfg.update(overrides)
    out = tmp_path / name
    Qwen2ForCausalLM(Qwen2Config(**cfg)).save_pretrained(str(out))
    return out


@pytest.mark.parametrize("overrides, needle", [
    ({"hidden_size": 32, "intermediate_size": 64}, "size mismatch"),
    ({"num_hidden_layers": 1}, "with no place in the base model"),
])
def test_base_with_other_shapes_is_refused(adapter_dir, tmp_path, capsys, overrides, needle):
    other = _other_base(tmp_path, "other", **overrides)
    rc = ml.main(["--base-model", str(other), "--adapter", str(adapter_dir), "--output", str(tmp_path / "m"),
                  "--allow-base-mismatch"])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and "Pass the base model the adapter was trained on" in err
    assert not (tmp_path / "m").exists()


def test_recorded_base_name_mismatch_is_refused(adapter_dir, tmp_path, capsys):
    other = _other_base(tmp_path, "some-other-model")
    rc = ml.main(["--base-model", str(other), "--adapter", str(adapter_dir), "--output", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "the adapter was trained on" in err and "--allow-base-mismatch" in err


def test_missing_target_modules_is_refused(tiny_model_dir, adapter_dir, tmp_path, capsys):
    broken = tmp_path / "adapter"
    shutil.copytree(adapter_dir, broken)
    cfg = json.loads((broken / "adapter_config.json").read_text())
    cfg["target_modules"] = ["c_attn"]          # a GPT-2 module name: not in a Qwen2 model
    (broken / "adapter_config.json").write_text(json.dumps(cfg))
    rc = ml.main(["--base-model", str(tiny_model_dir), "--adapter", str(broken), "--output", str(tmp_path / "m")])
    assert rc == 2
    assert "does not fit base model" in capsys.readouterr().err


def test_not_an_adapter_folder(tiny_model_dir, tmp_path, capsys):
    rc = ml.main(["--base-model", str(tiny_model_dir), "--adapter", str(tmp_path), "--output", str(tmp_path / "m")])
    assert rc == 2
    assert "no adapter_config.json" in capsys.readouterr().err


def test_failed_logit_check_writes_nothing(tiny_model_dir, adapter_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ml, "tolerance_for", lambda reference: -1.0)   # any difference now fails the check
    rc = ml.main(["--base-model", str(tiny_model_dir), "--adapter", str(adapter_dir), "--output", str(tmp_path / "m")])
    assert rc == 1
    assert "nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_help():
    proc = subprocess.run([sys.executable, "-m", "cli_utils.merge_lora", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    for flag in ("--base-model", "--adapter", "--output", "--dtype", "builtin:tiny"):
        assert flag in proc.stdout


@pytest.mark.slow
def test_merges_the_adapter_a_training_run_wrote(tmp_path, monkeypatch, tiny_model_dir):
    """The node's final_adapter (recorded base: its own builtin:tiny cache) merges with --base-model builtin:tiny."""
    import yaml

    from pipelines.common.tiny_model import TINY_CHAT_TEMPLATE, TINY_SEED, TINY_VERSION
    from pipelines.runner import main

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "outputs" / ".cache" / f"tiny-{TINY_VERSION}-seed{TINY_SEED}")
    cfg = yaml.safe_load((REPO / "pipelines" / "grpo" / "configs" / "quickstart.yaml").read_text())
    cfg["datasets"][0]["path"] = str(REPO / "inputs" / "quickstart.jsonl")
    cfg["training_parameters"].update(max_steps=2, save_steps=2)
    (tmp_path / "grpo.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "super.yaml").write_text(yaml.safe_dump({"pipeline_order": [{"node": "grpo", "config": "grpo.yaml"}]}))
    assert main(["--super-config", "super.yaml", "--set", "run_name=run"]) == 0
    adapter = tmp_path / "outputs" / "run" / "final_adapter"
    report = ml.merge_lora("builtin:tiny", adapter, tmp_path / "merged")
    assert report.tokenizer_source == "adapter" and report.max_abs_diff <= report.tolerance
    assert report.adapter_effect > 0          # two steps at lr 0.02 moved lora_B off zero
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(tmp_path / "merged")).chat_template == TINY_CHAT_TEMPLATE


@pytest.mark.parametrize("recorded, given, same", [
    ("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", True),
    ("Qwen/Qwen2.5-1.5B-Instruct", "/models/qwen2.5-1.5b-instruct", True),
    ("unsloth/qwen2.5-1.5b-instruct-unsloth-bnb-4bit", "Qwen/Qwen2.5-1.5B-Instruct", True),
    ("outputs/.cache/tiny-v1-seed0", "/elsewhere/.cache/tiny-v1-seed0", True),
    (None, "anything", True),
    ("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", False),
    ("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B", False),
])
def test_same_base_names(recorded, given, same):
    assert ml.same_base(recorded, given, given) is same
