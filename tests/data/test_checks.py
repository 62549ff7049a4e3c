"""The data layer's config checks: percentages, input paths (globs, raw entries), the held-out count shared
with the sampler, and the token budget."""
from __future__ import annotations

import pytest

from pipelines.data.checks import check_held_out, check_input_paths, check_length_budget, check_percentages
from pipelines.data.sampling import held_out_rows, sample_datasets
from tests.data.data_rows import good_rows, make_spec, write_jsonl


def messages(problems) -> list[str]:
    return [str(p) for p in problems]


def test_percentages_rule():
    spec = make_spec([{"path": "a", "percentage": 0.7}, {"path": "b", "percentage": 0.6}], total_rows=10)
    assert "percentages sum to 1.3" in messages(check_percentages(spec.datasets, "c.yaml"))[0]
    spec = make_spec([{"path": "a", "percentage": 0.7}, {"path": "b", "percentage": 0.3}], total_rows=10)
    assert check_percentages(spec.datasets, "c.yaml") == []
    spec = make_spec([{"path": "a", "percentage": 0.0}], total_rows=10)
    assert "every percentage is 0" in messages(check_percentages(spec.datasets, "c.yaml"))[0]


def test_input_paths_rule_and_globs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "b.csv").write_text("x\n")
    assert check_input_paths(make_spec([{"path": "*.jsonl"}], 1).datasets, "c.yaml") == []
    msgs = messages(check_input_paths(make_spec([{"path": "missing/*.parquet"}], 1).datasets, "c.yaml"))
    assert msgs[0].startswith("c.yaml: datasets[0].path: no file matches 'missing/*.parquet'")
    msgs = messages(check_input_paths(make_spec([{"path": "b.csv"}], 1).datasets, "c.yaml"))
    assert "unsupported file type '.csv'" in msgs[0]


def test_input_paths_of_entries_that_did_not_validate_are_still_checked(tmp_path, monkeypatch):
    """A partial check hands over the raw dict of an entry the schema rejected; its path is still checked,
    and references to an earlier node's output are left to the runner."""
    monkeypatch.chdir(tmp_path)
    raw = [{"path": "nope.jsonl", "percentage": "lots"}, {"path": "@grpo.final_adapter"}, {"percentage": 1}]
    assert [p.key for p in check_input_paths(raw, "c.yaml")] == ["datasets[0].path"]


@pytest.mark.parametrize("rows,fraction,total,expected", [
    (None, 0.9, 5, 5),      # 4.5 rounds half up: the sampler asks for 5, so the check must count 5
    (None, 0.5, 5, 3),
    (None, 0.1, 24, 2),
    (3, None, 10, 3),
    (None, None, 10, 0),
])
def test_held_out_rows_round_half_up(rows, fraction, total, expected):
    assert held_out_rows(rows, fraction, total) == expected


def test_held_out_check_refuses_the_case_it_exists_for():
    """total_rows 5 with an eval fraction of 0.9: 5 held-out rows would leave none to train on."""
    problems = check_held_out(None, 0.9, 5, "c.yaml")
    assert messages(problems) == ["c.yaml: evaluation: held-out rows (5) must be fewer than "
                                  "dataset_settings.total_rows (5)"]
    assert check_held_out(None, 0.5, 5, "c.yaml") == []


def test_the_check_and_the_sampler_count_the_same_held_out_rows(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", good_rows(40))
    for fraction, total in ((0.5, 5), (0.3, 5), (0.25, 10), (0.7, 3)):
        asked = held_out_rows(None, fraction, total)
        res = sample_datasets(make_spec([{"path": str(path)}], total_rows=total, eval_rows=asked), None)
        assert len(res.eval) == asked


def test_length_budget_names_the_keys():
    problems = check_length_budget(("max_prompt_length", 40), ("max_completion_length", 20),
                                   ("model.max_seq_length", 50), "c.yaml")
    assert messages(problems) == ["c.yaml: model.max_seq_length: max_prompt_length (40) + max_completion_length "
                                  "(20) = 60 exceeds max_seq_length (50); raise max_seq_length or lower the others"]
    assert check_length_budget(("p", 30), ("c", 20), ("m", 50), "c.yaml") == []
