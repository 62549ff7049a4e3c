"""The difficulty table: exact running sums, atomic save and reload, band weights."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.data.difficulty import TABLE_FILE, DifficultyTable, table_path


def test_counts_means_and_solved_rates():
    table = DifficultyTable(solved_at=1.0)
    table.update([("a", "1"), ("a", "1"), ("a", "2"), ("b", "1")], [1.0, 0.5, None, float("nan")])
    table.update([("a", "1")], [2.0])
    one = table.rows[("a", "1")]
    assert (one.attempts, one.scored, one.solved) == (3, 3, 2)
    assert one.mean_reward == pytest.approx(3.5 / 3) and one.solved_rate == pytest.approx(2 / 3)
    unscored = table.rows[("a", "2")]
    assert unscored.attempts == 1 and unscored.mean_reward is None and unscored.solved_rate == 0.0
    assert table.attempts == 5 and ("b", "1") in table.rows          # a NaN reward is an attempt, not a score
    with pytest.raises(ValueError):
        table.update([("a", "1")], [])


def test_save_and_load_round_trip_exactly(tmp_path):
    table = DifficultyTable(solved_at=0.5)
    table.update([("x", str(i % 7)) for i in range(50)], [math.sin(i) for i in range(50)])
    table.save(tmp_path / TABLE_FILE)
    assert not [p for p in tmp_path.iterdir() if p.name != TABLE_FILE]       # no temp file left behind
    again = DifficultyTable.load(table_path(tmp_path), solved_at=0.5)        # a run dir names its table
    assert again.rows == table.rows and list(again.rows) == list(table.rows)
    assert again.to_arrow().equals(table.to_arrow())
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"dataset": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="not a difficulty table"):
        DifficultyTable.load(tmp_path / "bad.parquet", 1.0)


def test_band_weights_and_in_band():
    table = DifficultyTable(solved_at=1.0)
    table.update([("d", "easy")] * 4 + [("d", "mid")] * 4 + [("d", "hard")] * 4,
                 [1, 1, 1, 1] + [1, 0, 1, 0] + [0, 0, 0, 0])
    keys = [("d", "easy"), ("d", "mid"), ("d", "hard"), ("d", "never-seen")]
    assert np.array_equal(table.weights(keys, (0.25, 0.75), 0.1), [0.1, 1.0, 0.1, 1.0])
    assert np.array_equal(table.weights(keys, (0.0, 0.5), 0.0), [0.0, 1.0, 1.0, 1.0])   # ends included
    assert table.in_band((0.5, 1.0)) == {("d", "easy"), ("d", "mid")}
