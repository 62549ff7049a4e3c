"""Dynamic sampling on the tiny model: zero-spread groups are replaced by groups of freshly drawn rows (TRL's own
frac_reward_zero_std of the trained batch drops below the share before replacement, and well below the same run
without it), and the fresh rows are a pure function of (seed, step, attempt)."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from pipelines.grpo.dynamic_sampling import draw_rows
from tests.grpo.training_runs import outputs, quickstart_config, run_node, step_records, tiny_cache, write_super  # noqa: F401


def half_dead(constant: float = 0.5):
    """Rows whose id hashes even score ``constant`` whatever the completion (zero-spread groups); the others score
    the parity of the completion's length, so their groups usually have spread."""

    def reward(prompts, completions, row_id, **kwargs):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [constant if zlib.crc32(str(r).encode()) % 2 == 0 else float(len(t) % 2)
                for r, t in zip(row_id, texts)]

    return reward


def config(run_name: str, enabled: bool, steps: int = 4) -> dict:
    cfg = quickstart_config(max_steps=steps, save_steps=100)
    cfg["run_name"] = run_name
    cfg["datasets"][0]["reward_funcs"] = [{"name": "tests.grpo.test_dynamic_sampling:half_dead"}]
    cfg["dataset_settings"]["dynamic_sampling"] = {"enabled": enabled, "max_extra_batches": 3}
    cfg["logging"]["log_completions_every"] = 0
    return cfg


def test_fresh_rows_depend_only_on_seed_step_and_attempt():
    first = draw_rows(42, 3, 1, 5, 100)
    assert np.array_equal(first, draw_rows(42, 3, 1, 5, 100))
    assert not np.array_equal(first, draw_rows(42, 3, 2, 5, 100))
    assert not np.array_equal(first, draw_rows(42, 4, 1, 5, 100))
    assert len(set(first.tolist())) == 5                                  # no row twice while rows remain
    weights = np.zeros(100)
    weights[[7, 9]] = 1.0
    assert set(draw_rows(1, 0, 1, 6, 100, weights).tolist()) <= {7, 9}    # weight 0: never drawn


@pytest.mark.slow
def test_dynamic_sampling_lowers_the_trained_zero_spread_share(outputs, tmp_path):  # noqa: F811
    for name, enabled in (("on", True), ("off", False)):
        assert run_node(outputs, write_super(tmp_path / name, config(name, enabled))) == 0
    on, off = step_records(outputs / "on"), step_records(outputs / "off")
    assert len(on) == len(off) == 4
    for rec in on:
        assert rec["frac_reward_zero_std"] <= rec["sampling/dynamic/zero_spread_before"] + 1e-9, rec
    assert any(rec["sampling/dynamic/replaced_groups"] > 0 for rec in on)
    assert sum(r["sampling/dynamic/extra_batches"] for r in on) >= 1
    mean_on = np.mean([r["frac_reward_zero_std"] for r in on])
    mean_off = np.mean([r["frac_reward_zero_std"] for r in off])
    assert mean_off >= 0.25 and mean_on <= mean_off / 2, (mean_on, mean_off)
    assert not any("sampling/dynamic/extra_batches" in r for r in off)


@pytest.mark.slow
def test_two_processes_replace_groups_in_step_and_count_every_completion(outputs, tmp_path):  # noqa: F811
    """Each process replaces its own slots; every process generates the same number of extra batches (a
    disagreement would hang a collective), and the difficulty table counts the completions of both."""
    import pyarrow.parquet as pq

    from tests.grpo.training_runs import high_scores, two_process_device

    cfg = config("mp-dyn", True, steps=3)
    cfg["reward"]["score_save_threshold"] = 0.0            # every completion of both ranks is exported
    cfg["launch"] = {"device": two_process_device()}
    assert run_node(outputs, write_super(tmp_path, cfg), extra=["--num-processes", "2"]) == 0
    records = step_records(outputs / "mp-dyn")
    assert [r["step"] for r in records] == [1, 2, 3]
    for rec in records:
        assert rec["frac_reward_zero_std"] <= rec["sampling/dynamic/zero_spread_before"] + 1e-9, rec
    assert any(rec["sampling/dynamic/replaced_groups"] > 0 for rec in records)
    table = pq.read_table(outputs / "mp-dyn" / "difficulty.parquet")
    exported = high_scores(outputs / "mp-dyn")
    assert sum(table["attempts"].to_pylist()) == len(exported) > 3 * 16
    assert {r["rank"] for r in exported} == {0, 1}
