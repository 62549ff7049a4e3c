"""Sampling: percentages, seeded determinism, interleaving, held-out rows, shortfall modes, replacements."""
from __future__ import annotations

import logging
from collections import Counter

import pytest

from pipelines.common.problems import ConfigError
from pipelines.data.sampling import rows_per_dataset, sample_datasets, split_eval
from tests.data.data_rows import BAD_LINES, good_rows, make_spec, sharegpt, write_jsonl


@pytest.fixture
def two_files(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", good_rows(100), [line for line, _ in BAD_LINES])
    b = write_jsonl(tmp_path / "b.jsonl", good_rows(50, start=1000))
    return str(a), str(b)


def test_percentages_set_each_datasets_share_and_rows_are_interleaved(two_files):
    cfg = make_spec([{"path": two_files[0], "percentage": 0.25}, {"path": two_files[1], "percentage": 0.75}],
                      total_rows=40)
    result = sample_datasets(cfg, None)
    by_ds = Counter(r["dataset_index"] for r in result.train)
    assert by_ds == Counter({0: 10, 1: 30})
    assert [s.train_rows for s in result.stats] == [10, 30]
    order = [r["dataset_index"] for r in result.train]
    assert order != sorted(order) and order != sorted(order, reverse=True)
    for r in result.train:
        assert r["dataset_path"] == two_files[r["dataset_index"]]
        assert (r["target"] >= 1000) == (r["dataset_index"] == 1)
    assert len({r["row_id"] for r in result.train}) == 40  # without replacement


def test_rounding_of_percentages():
    cfg = make_spec([{"path": "a", "percentage": 0.125}, {"path": "b", "percentage": 0.335}, {"path": "c",
                       "percentage": 0.0}], total_rows=20)
    assert rows_per_dataset(cfg.datasets, cfg.settings.total_rows) == [3, 7, 0]  # 2.5 rounds half up, 6.7 -> 7
    assert split_eval(5, [3, 7, 0]) == [2, 3, 0]  # 1.5 / 3.5: the tie goes to the first dataset
    assert split_eval(4, [1, 1, 2]) == [1, 1, 2]
    assert sum(split_eval(7, [3, 7, 0])) == 7 and split_eval(0, [3, 7]) == [0, 0]


def test_same_seed_same_rows_same_order_other_seed_differs(two_files):
    def run(seed):
        cfg = make_spec([{"path": two_files[0], "percentage": 0.5}, {"path": two_files[1], "percentage": 0.5}],
                          total_rows=30, seed=seed, eval_rows=6)
        res = sample_datasets(cfg, None)
        return [r["row_id"] for r in res.train], [r["row_id"] for r in res.eval], [r["answer"] for r in res.train]
    assert run(3) == run(3)
    assert run(3)[0] != run(4)[0]


def test_eval_rows_are_held_out_disjoint_and_shared_by_percentage(two_files):
    cfg = make_spec([{"path": two_files[0], "percentage": 0.5}, {"path": two_files[1], "percentage": 0.5}],
                      total_rows=40, eval_rows=10)
    res = sample_datasets(cfg, None)
    assert len(res.train) == 40 and len(res.eval) == 10
    assert not {r["row_id"] for r in res.train} & {r["row_id"] for r in res.eval}
    assert Counter(r["dataset_index"] for r in res.eval) == Counter({0: 5, 1: 5})

    # held-out rows are the first of the same seeded draw: held-out + training == a plain draw of the sum
    one = make_spec([{"path": two_files[0]}], total_rows=20, eval_rows=5)
    split = sample_datasets(one, None)
    plain = sample_datasets(make_spec([{"path": two_files[0]}], total_rows=25), None)
    assert {r["row_id"] for r in split.train + split.eval} == {r["row_id"] for r in plain.train}


def test_shortfall_error_names_the_dataset_and_the_fix(two_files):
    cfg = make_spec([{"path": two_files[1], "percentage": 1.0}], total_rows=60)
    with pytest.raises(ConfigError) as info:
        sample_datasets(cfg, None, config_file="cfg.yaml")
    text = str(info.value)
    assert "cfg.yaml: datasets[0]" in text and "60 rows asked" in text and "only 50" in text
    assert "shortfall: take_all" in text


def test_shortfall_take_all_warns_and_takes_everything(two_files, caplog):
    cfg = make_spec([{"path": two_files[1], "percentage": 1.0}], total_rows=60,
                      shortfall="take_all")
    with caplog.at_level(logging.WARNING):
        res = sample_datasets(cfg, None)
    assert len(res.train) == 50 and res.stats[0].shortfall
    assert "taking all of them" in caplog.text


def test_dataset_with_zero_valid_rows_is_a_config_error_naming_the_file(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [], [line for line, _ in BAD_LINES])
    cfg = make_spec([{"path": str(bad)}], total_rows=5)
    with pytest.raises(ConfigError) as info:
        sample_datasets(cfg, None, config_file="c.yaml")
    assert f"c.yaml: datasets[0].path: {bad}: no usable rows among {len(BAD_LINES)} read" in str(info.value)


class CountingWords:
    """A token counter (words + 2 per message) that records which prompts it saw."""

    def __init__(self):
        self.seen = []

    def __call__(self, messages):
        self.seen.append(messages[-1]["content"])
        return sum(len(m["content"].split()) + 2 for m in messages)


def test_too_long_rows_are_replaced_from_the_permutation_and_only_sampled_rows_are_tokenized(tmp_path):
    rows = good_rows(200)
    for i in range(0, 200, 2):  # every other row is far too long
        rows[i]["conversations"][0]["value"] = "word " * 50
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = make_spec([{"path": str(path)}], total_rows=20,
                      max_prompt_length=10)
    counter = CountingWords()
    res = sample_datasets(cfg, counter)
    assert len(res.train) == 20 and all(r["target"] % 2 == 1 for r in res.train)
    dropped = res.stats[0].skipped["prompt_too_long"]
    assert dropped > 0
    assert len(set(counter.seen)) <= 20 + dropped < 200  # rows never sampled were never tokenized


def test_budget_shortfall_is_reported_per_mode(tmp_path):
    rows = [sharegpt(("human", "word " * 30), ("gpt", "x"))] * 10 + good_rows(5)
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    kw = {"max_prompt_length": 10}
    with pytest.raises(ConfigError, match=r"only 5 usable rows \(see skipped\)"):
        sample_datasets(make_spec([{"path": str(path)}], total_rows=8, **kw), CountingWords())
    cfg = make_spec([{"path": str(path)}], total_rows=8,
                      shortfall="take_all", **kw)
    res = sample_datasets(cfg, CountingWords())
    assert len(res.train) == 5 and res.stats[0].skipped["prompt_too_long"] == 10
    assert all(r["prompt"] for r in res.train)


def test_rows_never_carry_reward_configs_or_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY_FOR_TEST", "sk-very-secret")
    path = write_jsonl(tmp_path / "d.jsonl", good_rows(5))
    cfg = make_spec([{"path": str(path), "reward_funcs": [{"name": "keyword", "keywords": ["x"],
                                                             "api_key": "sk-very-secret"}]}], total_rows=5)
    res = sample_datasets(cfg, None)
    for row in res.train:
        assert set(row) == {"prompt", "answer", "dataset_index", "dataset_path", "row_id", "nums", "target"}
        assert "sk-very-secret" not in repr(row)


def test_zero_percentage_dataset_is_not_read(tmp_path, two_files):
    cfg = make_spec([{"path": two_files[0], "percentage": 1.0},
                       {"path": str(tmp_path / "bad.jsonl"), "percentage": 0.0}], total_rows=5)
    (tmp_path / "bad.jsonl").write_text("garbage\n")
    res = sample_datasets(cfg, None)
    assert len(res.train) == 5 and res.stats[1].rows_read == 0
