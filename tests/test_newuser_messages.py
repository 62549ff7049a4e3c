"""Messages a new user meets at --validate, through the real runner: exit code and text."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.runner import main

REPO = Path(__file__).resolve().parents[1]
SUPER = str(REPO / "super_config.yaml")


def test_set_takes_list_indexes_as_problems_print_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    rc = main(["--super-config", SUPER, "--validate", "--outputs", str(tmp_path), "--set",
               "datasets[0].path=inputs/nope.jsonl"])
    err = capsys.readouterr().err
    assert rc == 2 and "datasets[0].path: no file matches 'inputs/nope.jsonl'" in err
    assert "cannot set this key path" not in err


def test_a_plain_path_to_a_hub_layout_folder_says_to_write_hf(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    data = tmp_path / "gsm8k" / "data"
    data.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"question": "1+1?", "answer": "#### 2"}]), data / "train-0.parquet")
    rc = main(["--super-config", SUPER, "--validate", "--outputs", str(tmp_path / "out"), "--set",
               f"datasets[0].path={tmp_path / 'gsm8k'}"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"is a folder holding a Hugging Face dataset (in the Hub layout): write `path: hf:{tmp_path / 'gsm8k'}`" \
        in err
    assert "no file matches" not in err
