"""merge_lora never destroys its input (F10), says what is wrong with a damaged adapter (F22, F23) and takes
Augmentoolkit's flag names (issue 14): a real PEFT adapter on the tiny model, real folders."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_utils import merge_lora as ml
from tests.test_merge_lora import REPO, make_adapter


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A run dir holding a final_adapter, as a training run leaves it."""
    run = tmp_path_factory.mktemp("outputs") / "exp1"
    make_adapter(tiny_model_dir, run / "final_adapter")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    return run


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _merge(base: Path, adapter: Path, output: Path, *extra: str) -> int:
    return ml.main(["--base-model", str(base), "--adapter", str(adapter), "--output", str(output), *extra])


@pytest.mark.parametrize("where", ["adapter", "run dir", "inside adapter", "base", "inside base"])
def test_output_touching_an_input_is_refused_even_with_overwrite(tiny_model_dir, run_dir, tmp_path, capsys, where):
    """F10: --overwrite with the adapter (or the run dir holding it) as output deleted the input."""
    adapter = run_dir / "final_adapter"
    output = {"adapter": adapter, "run dir": run_dir, "inside adapter": adapter / "merged",
              "base": tiny_model_dir, "inside base": tiny_model_dir / "merged"}[where]
    before = _snapshot(run_dir), _snapshot(tiny_model_dir)
    assert _merge(tiny_model_dir, adapter, output, "--overwrite") == 2
    assert "would destroy the" in capsys.readouterr().err
    assert (_snapshot(run_dir), _snapshot(tiny_model_dir)) == before


def test_overwrite_replaces_only_an_earlier_merge(tiny_model_dir, run_dir, tmp_path, capsys):
    adapter = run_dir / "final_adapter"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "plan.md").write_text("mine")
    assert _merge(tiny_model_dir, adapter, other, "--overwrite") == 2
    assert "not an earlier merged model" in capsys.readouterr().err and (other / "plan.md").read_text() == "mine"
    merged = tmp_path / "merged"
    assert _merge(tiny_model_dir, adapter, merged) == 0
    assert _merge(tiny_model_dir, adapter, merged, "--overwrite") == 0 and (merged / "config.json").is_file()


def test_output_that_is_a_file_is_refused(tiny_model_dir, run_dir, tmp_path, capsys):
    """F22: a file as --output gave a traceback."""
    target = tmp_path / "model.bin"
    target.write_bytes(b"keep")
    assert _merge(tiny_model_dir, run_dir / "final_adapter", target, "--overwrite") == 2
    assert "is a file" in capsys.readouterr().err and target.read_bytes() == b"keep"


def _broken_adapter(run_dir: Path, tmp_path: Path) -> Path:
    broken = tmp_path / "adapter"
    shutil.copytree(run_dir / "final_adapter", broken)
    return broken


def test_null_adapter_config_is_a_clear_error(tiny_model_dir, run_dir, tmp_path, capsys):
    """F22: `null` in adapter_config.json gave an AttributeError traceback."""
    broken = _broken_adapter(run_dir, tmp_path)
    for text, needle in (("null", "expected a JSON object"), ("{}", "is not a PEFT adapter config"),
                         ("{\"peft_type\": \"NOPE\"}", "is not a PEFT adapter config")):
        (broken / "adapter_config.json").write_text(text)
        assert _merge(tiny_model_dir, broken, tmp_path / "m") == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_truncated_weights_are_reported_as_damaged(tiny_model_dir, run_dir, tmp_path, capsys):
    """F22: truncated adapter weights gave a traceback."""
    broken = _broken_adapter(run_dir, tmp_path)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert _merge(tiny_model_dir, broken, tmp_path / "m") == 2
    assert "truncated or damaged" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_missing_weights_are_reported_as_missing(tiny_model_dir, run_dir, tmp_path, capsys):
    """F23: a missing weights file was reported as "does not fit base model"."""
    broken = _broken_adapter(run_dir, tmp_path)
    (broken / "adapter_model.safetensors").unlink()
    assert _merge(tiny_model_dir, broken, tmp_path / "m") == 2
    err = capsys.readouterr().err
    assert "no adapter weights" in err and "does not fit" not in err


def test_augmentoolkit_flag_names(tiny_model_dir, run_dir, tmp_path):
    """Issue 14: the seed's merge tool takes --base-model --adapter-model --save-path."""
    rc = ml.main(["--base-model", str(tiny_model_dir), "--adapter-model", str(run_dir / "final_adapter"),
                  "--save-path", str(tmp_path / "merged")])
    assert rc == 0 and (tmp_path / "merged" / "config.json").is_file()
    out = subprocess.run([sys.executable, "-m", "cli_utils.merge_lora", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60).stdout
    assert "--adapter ADAPTER, --adapter-model ADAPTER" in out and "--output OUTPUT, --save-path OUTPUT" in out


def test_the_readme_merge_example_obeys_the_rule_it_states(tmp_path):
    """The README's own example writes beside the adapter in its run dir; the rule allows that, and refuses an
    output inside the adapter folder or one containing the run dir."""
    import re

    from cli_utils.merge_lora import MergeError, check_output

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = re.search(r"merge_lora\.py --base-model \S+ --adapter (\S+) \\\n\s+--output (\S+)", readme)
    assert example, "the README's merge example"
    adapter, output = (tmp_path / example.group(1)), (tmp_path / example.group(2))
    adapter.mkdir(parents=True)
    check_output(output, [("adapter folder", adapter)], overwrite=False)          # allowed, as documented
    assert "beside the adapter in its run dir" in readme
    for bad in (adapter / "merged", adapter.parent.parent):
        with pytest.raises(MergeError, match="would destroy the adapter folder"):
            check_output(bad, [("adapter folder", adapter)], overwrite=False)
