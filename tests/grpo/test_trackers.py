"""Where the trackers' files went is said at the end of a run; an offline wandb run gets its `wandb sync` command."""
from __future__ import annotations

import pytest

from pipelines.grpo.trackers import tracker_lines
from tests.grpo.training_runs import outputs, quickstart_config, run_node, tiny_cache, write_super  # noqa: F401


def test_wandb_offline_runs_get_the_sync_command(tmp_path):
    (tmp_path / "wandb" / "offline-run-20260101_120000-abc").mkdir(parents=True)
    [line] = tracker_lines("wandb", "offline", tmp_path)
    assert line == (f"wandb ran offline: its files are in {tmp_path}/wandb/offline-run-20260101_120000-abc; upload "
                    f"them with `wandb sync {tmp_path}/wandb/offline-run-20260101_120000-abc`")
    (tmp_path / "wandb" / "offline-run-20260102_120000-def").mkdir()          # a resumed run: two parts
    [line] = tracker_lines("wandb", "offline", tmp_path)
    assert "offline-run-20260102_120000-def`" in line and f"`wandb sync {tmp_path}/wandb/offline-run-*`" in line
    assert tracker_lines("wandb", "online", tmp_path)[0].startswith(f"wandb files: {tmp_path}/wandb")
    assert tracker_lines("none", "offline", tmp_path) == []


@pytest.mark.slow
def test_a_tensorboard_run_says_where_its_logs_are(outputs, tmp_path):  # noqa: F811
    cfg = quickstart_config(max_steps=1, save_steps=10)
    cfg["run_name"] = "tb"
    cfg["logging"].update(report_to="tensorboard", log_completions_every=0)
    assert run_node(outputs, write_super(tmp_path, cfg)) == 0
    folder = outputs / "tb" / "tensorboard"
    assert f"tensorboard logs: {folder} (view them with `tensorboard --logdir {folder}`)" in \
        (outputs / "tb" / "run.log").read_text()
