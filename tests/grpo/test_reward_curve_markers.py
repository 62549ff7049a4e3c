"""reward_curve.png: a reward logged at one step only is drawn as a marker (a line through one point is
invisible)."""
from __future__ import annotations

import json

from pipelines.grpo import plots


def test_a_series_with_one_point_gets_a_marker(tmp_path, monkeypatch):
    metrics = tmp_path / "metrics.jsonl"
    records = [{"step": s, "rewards/combined/mean": s / 10} for s in range(1, 6)]
    records[2]["rewards/d/rare/mean"] = 0.9                 # logged at step 3 only
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    drawn = {}
    save = plots.save_figure

    def keep_lines(fig, out_path):               # the real figure is saved; its lines are read before it closes
        drawn.update({line.get_label(): line.get_marker() for line in fig.axes[0].get_lines()})
        return save(fig, out_path)

    monkeypatch.setattr(plots, "save_figure", keep_lines)
    assert plots.plot_reward_curve(metrics, tmp_path / "curve.png") == tmp_path / "curve.png"
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert drawn["d/rare"] == "o"
    assert drawn["combined"] in ("None", "", None)        # lines of several points stay plain
