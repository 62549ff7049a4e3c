import numpy as np
import pytest

from pipelines.rewards.signal import group_spread


def test_zero_spread_groups_split_into_solved_and_failed():
    spread = group_spread([1, 1, 0, 0, 0.5, 1, 1, 1 + 1e-9], group_size=2)
    assert spread.zero.tolist() == [True, True, False, True]
    assert spread.solved.tolist() == [True, False, False, True]
    assert spread.failed.tolist() == [False, True, False, False]
    assert spread.share() == 0.75 and spread.share("failed") == 0.25


def test_explicit_solved_threshold_and_missing_scores():
    spread = group_spread([0.4, 0.4, None, None, None, 0.2], group_size=2, solved_at=0.5)
    assert spread.zero.tolist() == [True, True, False]
    assert spread.solved.tolist() == [False, False, False]
    assert spread.failed.tolist() == [True, True, False]


def test_batch_must_split_into_groups():
    with pytest.raises(ValueError, match="groups of 4"):
        group_spread(np.zeros(6), group_size=4)
