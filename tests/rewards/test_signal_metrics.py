"""Signal metrics of a scored batch: zero-spread groups split solved/failed, variance shares, length, repetition."""
from __future__ import annotations

import math

import pytest

from pipelines.rewards.engine import ScoreResult
from pipelines.rewards.signal_metrics import SignalTracker, repetition, variance_shares


def result(ds: int, combined: float, **rewards: float) -> ScoreResult:
    return ScoreResult(ds, dict(rewards), combined, combined)


def test_repetition_counts_repeated_trigrams():
    assert repetition([1, 2, 3, 4]) == 0.0
    assert repetition([1, 2]) == 0.0
    assert repetition([7, 7, 7, 7, 7]) == pytest.approx(2 / 3)       # 3 trigrams, 1 distinct


def test_variance_shares_of_a_weighted_sum_add_up_to_one():
    a = [0, 1, 0, 1, 0, 1]
    b = [0, 0, 1, 1, 1, 0]
    combined = [2 * x + y for x, y in zip(a, b)]
    shares = variance_shares({"a": a, "b": b}, combined)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["a"] > 0.7 > shares["b"] > 0
    assert variance_shares({"a": [1, 1, 1]}, [1, 1, 1]) == {}          # no variance: no shares
    assert variance_shares({"a": [1, None, 1, 0]}, [1, 2, 1, 0]) == {"a": pytest.approx(1.0)}


def test_tracker_splits_zero_spread_groups_per_dataset():
    tracker = SignalTracker(2, ["qa", "math"], [["qa/kw"], ["math/eq", "math/fmt"]])
    batch = [result(0, 1.0, **{"qa/kw": 1.0}), result(0, 1.0, **{"qa/kw": 1.0}),        # qa: all solved
             result(0, 0.0, **{"qa/kw": 0.0}), result(0, 1.0, **{"qa/kw": 1.0}),        # qa: spread
             result(1, 0.0, **{"math/eq": 0.0, "math/fmt": 0.0}),                       # math: all failed
             result(1, 0.0, **{"math/eq": 0.0, "math/fmt": 0.0})]
    ids = [[1, 2, 3], [1, 1, 1, 1, 1], [4], [5, 6], [1, 2, 3, 1, 2, 3], [9]]
    tracker.add(3, ["p"] * 6, [f"c{i}" for i in range(6)], {"completion_ids": ids}, batch)
    out = tracker.pop()
    assert out["signal/zero_spread"] == pytest.approx(2 / 3)
    assert out["signal/all_solved"] == pytest.approx(1 / 3) and out["signal/all_failed"] == pytest.approx(1 / 3)
    assert out["signal/qa/all_solved"] == 0.5 and out["signal/qa/all_failed"] == 0.0
    assert out["signal/math/all_failed"] == 1.0
    assert out["signal/completion_length"] == pytest.approx(sum(map(len, ids)) / 6)
    assert out["signal/qa/completion_length"] == pytest.approx(11 / 4)
    assert out["signal/qa/kw/variance_share"] == pytest.approx(1.0)
    assert "signal/math/eq/variance_share" not in out           # combined never varies there
    assert not any(math.isnan(v) for v in out.values())
    [step] = tracker.take_steps()
    assert step.step == 3 and step.values["qa/kw"] == pytest.approx(0.75) and step.values["zero_spread"] == 2 / 3
    assert tracker.take_steps() == [] and tracker.pop() == {}
    assert tracker.samples()[0]["rewards"] == {"qa/kw": 1.0} and tracker.samples()[0]["tokens"] == 3


def test_all_equal_scores_count_as_failed_until_something_scores_higher():
    tracker = SignalTracker(2, ["qa"], [["qa/kw"]])
    zeros = [result(0, 0.0, **{"qa/kw": 0.0})] * 4
    tracker.add(1, ["p"] * 4, ["c"] * 4, {}, zeros)
    assert tracker.pop()["signal/all_failed"] == 1.0
    tracker.add(2, ["p"] * 4, ["c"] * 4, {}, [result(0, 1.0, **{"qa/kw": 1.0})] * 4)
    assert tracker.pop()["signal/all_solved"] == 1.0


def test_the_stack_feeds_every_training_batch_to_its_tracker():
    from tests.rewards.reward_cfg import make_cfg, stack_for

    stack = stack_for(make_cfg([{"name": "keyword", "keywords": ["Joy"]}]))
    try:
        assert stack.pop_metrics().get("signal/zero_spread") is None          # off until track_signal
        tracker = stack.track_signal(group_size=2)
        completions = ["Joy!", "Joy.", "no", "Joy"]
        stack.reward_func(["p1", "p1", "p2", "p2"], completions, dataset_index=[0] * 4,
                          completion_ids=[[1, 2], [1, 3], [4], [5, 5, 5, 5]])
        out = stack.pop_metrics()
        assert out["signal/zero_spread"] == 0.5 and out["signal/all_solved"] == 0.5
        assert out["signal/completion_length"] == pytest.approx(2.25)
        assert "rewards/combined/mean" in out
        [step] = tracker.take_steps()
        assert step.values["combined"] == pytest.approx(0.75)
        assert [s["completion"] for s in tracker.samples()] == completions
        stack.score_batch(None, ["x"], [{"prompt": "p", "dataset_index": 0}])   # evaluation: not recorded
        assert tracker.take_steps() == []
    finally:
        stack.close()
