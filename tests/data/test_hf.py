"""Hugging Face datasets as dataset paths (issue 13): hf:<folder> in the Hub layout (read in place), a
save_to_disk folder, splits, and the offline/unreachable-Hub error. Offline: only local folders are used."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.common.problems import ConfigError
from pipelines.data.hf import load_error
from pipelines.data.index import build_index
from pipelines.data.sampling import sample_datasets
from pipelines.data.summary import inspect_datasets
from tests.data.data_rows import good_rows, make_spec, sharegpt


@pytest.fixture
def hub_folder(tmp_path):
    """A dataset folder as `huggingface-cli download --repo-type dataset` leaves it: data/<split>-*.parquet."""
    data = tmp_path / "hub" / "data"
    data.mkdir(parents=True)
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(60)]
    pq.write_table(pa.Table.from_pylist(rows[:25]), data / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[25:50]), data / "train-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[50:]), data / "test-00000-of-00001.parquet")
    (tmp_path / "hub" / "README.md").write_text("# a dataset\n")
    return tmp_path / "hub"


def test_hub_layout_folder_is_read_in_place_per_split(hub_folder):
    train = build_index(f"hf:{hub_folder}", split="train")
    assert train.total == 50 and [f.kind for f in train.files] == ["parquet", "parquet"]
    test = build_index(f"hf:{hub_folder}", split="test")
    assert test.total == 10 and test.read([3])[3] == (None, {"question": "q53", "answer": "53"})
    with pytest.raises(ValueError, match=r"no split 'validation'; splits: train, test"):
        build_index(f"hf:{hub_folder}", split="validation")


def test_sampling_percentages_and_held_out_rows_work_on_an_hf_folder(hub_folder, tmp_path):
    jsonl = tmp_path / "local.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in good_rows(40)))
    spec = make_spec([{"path": f"hf:{hub_folder}", "columns": {"prompt": "question"}, "percentage": 0.5},
                      {"path": str(jsonl), "percentage": 0.5}], total_rows=20, eval_rows=4)
    res = sample_datasets(spec, None)
    assert [(s.train_rows, s.eval_rows) for s in res.stats] == [(10, 2), (10, 2)]   # held-out rows on top
    from_hub = [r for r in res.train + res.eval if r["dataset_index"] == 0]
    assert all(r["prompt"] == [{"role": "user", "content": f"q{r['answer']}"}] for r in from_hub)
    assert {r["row_id"] for r in res.train}.isdisjoint({r["row_id"] for r in res.eval})


def test_save_to_disk_folders_dataset_and_dataset_dict(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = [sharegpt(("human", f"q{i}"), ("gpt", f"a{i}")) for i in range(20)]
    rows[3] = {"conversations": []}
    rows[7] = sharegpt(("human", "x" * 5000), ("gpt", "y"))
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "one"))
    DatasetDict({"train": Dataset.from_list(rows[:10]), "dev": Dataset.from_list(rows[10:])}).save_to_disk(
        str(tmp_path / "dict"))
    spec = make_spec([{"path": f"hf:{tmp_path / 'one'}"}], total_rows=20, shortfall="take_all")
    spec.settings.max_row_bytes = 4096
    res = sample_datasets(spec, None)
    assert len(res.train) == 18 and res.stats[0].skipped == Counter({"empty_conversations": 1, "too_large": 1})
    assert res.train[0]["row_id"].startswith(f"hf:{tmp_path / 'one'}:train[")
    dev = sample_datasets(make_spec([{"path": f"hf:{tmp_path / 'dict'}", "split": "dev"}], total_rows=10), None)
    assert sorted(r["answer"] for r in dev.train) == sorted(f"a{i}" for i in range(10, 20))
    with pytest.raises(ConfigError, match=r"no split 'test'; splits: train, dev"):
        sample_datasets(make_spec([{"path": f"hf:{tmp_path / 'dict'}", "split": "test"}], total_rows=1), None)


def test_validate_summary_of_an_hf_folder_lists_its_columns(hub_folder):
    spec = make_spec([{"path": f"hf:{hub_folder}", "columns": {"prompt": "problem"}}], total_rows=4)
    with pytest.raises(ConfigError, match=r"columns.prompt: no column 'problem' in hf:.*; columns found: "
                                          r"question, answer"):
        inspect_datasets(spec, "c.yaml")
    ok = make_spec([{"path": f"hf:{hub_folder}", "columns": {"prompt": "question"}}], total_rows=4)
    assert "dataset[0] hf:" in "\n".join(inspect_datasets(ok, "c.yaml"))


def test_offline_hub_id_not_in_the_cache_names_hf_hub_offline_and_the_cache(tmp_path):
    script = ("from pipelines.data.index import build_index\n"
              "try:\n    build_index('hf:some-org/not-cached-dataset')\n"
              "except ValueError as exc:\n    print('ERR', exc)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert "ERR hf:some-org/not-cached-dataset: cannot load the dataset: HF_HUB_OFFLINE is set and it is not in " \
           "the local cache" in proc.stdout, proc.stdout + proc.stderr
    assert "Hugging Face cache" in proc.stdout and "Traceback" not in proc.stderr


def test_unreachable_hub_error_says_so(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    err = str(load_error("trl-lib/tldr", ConnectionError("Couldn't reach 'trl-lib/tldr' on the Hub")))
    assert "the Hugging Face Hub could not be reached" in err and "HF_HUB_OFFLINE=1" in err
    assert "~/.cache/huggingface" in err
    other = str(load_error("x/y", ValueError("Config name is missing")))
    assert "could not be reached" not in other and "Config name is missing" in other


def test_full_scan_covers_hf_folders_read_in_place_and_saved_datasets(hub_folder, tmp_path):
    from datasets import Dataset

    Dataset.from_list([{"prompt": "a"}, {"prompt": ""}, {"prompt": None}]).save_to_disk(str(tmp_path / "saved"))
    saved = make_spec([{"path": f"hf:{tmp_path / 'saved'}"}], total_rows=1)
    text = "\n".join(inspect_datasets(saved, "c.yaml", full_scan=True))
    assert "full scan: rows read: 3, valid: 1, skipped: " in text and "(empty_prompt)" in text
    hub = make_spec([{"path": f"hf:{hub_folder}", "columns": {"prompt": "question"}}], total_rows=2)
    assert "full scan: rows read: 50, valid: 50, skipped: none" in "\n".join(inspect_datasets(hub, "c.yaml",
                                                                                               full_scan=True))


def test_a_missing_split_points_at_split_not_at_the_file(hub_folder):
    spec = make_spec([{"path": f"hf:{hub_folder}", "split": "validation"}], total_rows=4)
    with pytest.raises(ConfigError) as err:
        sample_datasets(spec, None)
    [problem] = err.value.problems
    assert problem.key == "datasets[0].split"
    assert "no split 'validation'; splits: " in problem.message and "set `split` to one of them" in problem.message
    assert "fix or remove the file" not in problem.message


def test_a_plain_path_to_a_dataset_folder_says_to_write_hf(hub_folder, tmp_path):
    from datasets import Dataset

    from pipelines.data.checks import check_input_paths
    from pipelines.data.config import DatasetEntry

    Dataset.from_list([{"prompt": "a"}]).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "empty").mkdir()
    entries = [DatasetEntry(path=str(p), percentage=0.3, reward_funcs=[{"name": "k"}])
               for p in (hub_folder, tmp_path / "saved", tmp_path / "empty")]
    hub, saved, empty = [p.message for p in check_input_paths(entries, "c.yaml")]
    assert "is a folder holding a Hugging Face dataset (in the Hub layout): write `path: hf:" in hub
    assert "(written by save_to_disk): write `path: hf:" in saved
    assert "is a folder, and no file of it is a supported data file" in empty
