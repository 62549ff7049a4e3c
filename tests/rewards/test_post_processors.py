"""Combination and scaling functions, with the engine's shared None and gate rules."""
from __future__ import annotations

import math

import pytest

from pipelines.rewards.combine import PostProcessor, Score, combine, scale
from pipelines.rewards.errors import RewardFunctionError
from pipelines.rewards.catalog import check_function_kwargs, combinations, scalings


def comb(name, **kwargs):
    return PostProcessor(name, combinations().get(name), kwargs)


def scl(name, **kwargs):
    return PostProcessor(name, scalings().get(name), kwargs)


def scores(*items):
    """(value, weight, gate) triples or None -> Score list."""
    return [None if it is None else Score(it[0], f"d0/f{i}", it[1], it[2]) for i, it in enumerate(items)]


@pytest.mark.parametrize("name, expected", [("sum", 3.5), ("mean", 3.5 / 3), ("min", 0.5),
                                            ("product", 1.0 * 2.0 * 0.5), ("weighted_sum", 1.0 * 2 + 2.0 * 1 + 0.5 * 4)])
def test_combination_values(name, expected):
    got = combine(scores((1.0, 2, False), (2.0, 1, False), (0.5, 4, False)), comb(name))
    assert got == pytest.approx(expected)


def test_weighted_sum_normalize():
    got = combine(scores((1.0, 3, False), (0.0, 1, False)), comb("weighted_sum", normalize=True))
    assert got == pytest.approx(0.75)


@pytest.mark.parametrize("name", ["sum", "mean", "weighted_sum", "min", "product"])
def test_none_is_left_out(name):
    with_none = combine(scores((1.0, 2, False), None, (3.0, 1, False)), comb(name))
    without = combine(scores((1.0, 2, False), (3.0, 1, False)), comb(name))
    assert with_none == without
    assert combine(scores(None, None), comb(name)) is None
    assert combine([], comb(name)) is None


@pytest.mark.parametrize("name", ["sum", "mean", "weighted_sum", "min", "product"])
def test_gate_zero_zeroes_everything(name):
    assert combine(scores((0.0, 1, True), (5.0, 1, False)), comb(name)) == 0.0
    # a passing gate does not interfere; a None gate is just left out
    assert combine(scores((1.0, 1, True), (5.0, 1, False)), comb(name)) != 0.0
    assert combine(scores(None, (5.0, 1, False)), comb(name)) != 0.0


def test_score_is_a_float_with_metadata():
    s = Score(0.5, "d1/keyword", 2.0, True)
    assert s == 0.5 and s + 1 == 1.5 and (s.name, s.weight, s.gate) == ("d1/keyword", 2.0, True)
    assert "d1/keyword" in repr(s)


def test_combination_raising_names_it():
    def broken(scores):
        raise ValueError("boom")
    with pytest.raises(RewardFunctionError, match="'broken'.*boom"):
        combine(scores((1.0, 1, False)), PostProcessor("broken", broken))


def test_combination_bad_return():
    with pytest.raises(RewardFunctionError, match="number or None"):
        combine(scores((1.0, 1, False)), PostProcessor("bad", lambda s: "high"))


def test_identity_and_none_positions():
    assert scale([1.0, None, 3.0], scl("identity")) == [1.0, None, 3.0]
    assert scale([None, None], scl("zscore")) == [None, None]
    assert scale([], scl("rank")) == []


def test_zscore():
    out = scale([1.0, None, 2.0, 3.0], scl("zscore"))
    assert out[1] is None
    vals = [v for v in out if v is not None]
    assert sum(vals) == pytest.approx(0.0, abs=1e-9)
    assert vals[2] == pytest.approx(1 / math.sqrt(2 / 3), rel=1e-4)
    assert scale([2.0, 2.0, 2.0], scl("zscore")) == [0.0, 0.0, 0.0]
    assert scale([5.0], scl("zscore")) == [0.0]


def test_minmax():
    assert scale([0.0, 5.0, 10.0], scl("minmax")) == [0.0, 0.5, 1.0]
    assert scale([0.0, 10.0], scl("minmax", low=-1, high=1)) == [-1.0, 1.0]
    assert scale([3.0, 3.0], scl("minmax")) == [0.5, 0.5]


def test_rank_with_ties():
    assert scale([10.0, None, -5.0, 10.0, 0.0], scl("rank")) == [pytest.approx(5 / 6), None, 0.0,
                                                               pytest.approx(5 / 6), pytest.approx(1 / 3)]
    assert scale([7.0], scl("rank")) == [0.5]


def test_clip():
    assert scale([-5.0, 0.2, 9.0, None], scl("clip")) == [-1.0, 0.2, 1.0, None]
    assert scale([-5.0, 9.0], scl("clip", low=0, high=2)) == [0.0, 2.0]
    with pytest.raises(RewardFunctionError, match="low"):
        scale([1.0], scl("clip", low=2, high=1))


def test_scaling_wrong_length():
    with pytest.raises(RewardFunctionError, match="returned 1 values for 2"):
        scale([1.0, 2.0], PostProcessor("short", lambda v: v[:1]))


def test_kwargs_are_checked_against_signatures():
    assert check_function_kwargs(scalings(), "clip", {"low": 0, "high": 1}) == []
    assert check_function_kwargs(scalings(), "clip", {"lo": 0})
    assert check_function_kwargs(combinations(), "weighted_sum", {"normalize": True}) == []
    msgs = check_function_kwargs(combinations(), "summ", {})
    assert msgs and '"sum"' in msgs[0]
