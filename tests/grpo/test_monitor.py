"""The monitor's sentinels on made-up step histories, and --validate of the monitor section."""
from __future__ import annotations

import pytest

from pipelines.grpo.config import GRPOConfigFile
from pipelines.grpo.monitor import Monitor, RunShape, trend
from pipelines.grpo.monitor_config import MonitorSection, check_monitor
from tests.grpo.training_runs import quickstart_config

RISING = [0.0, 0.1, 0.15, 0.3, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9]
FLAT = [0.0] * 10
NOISY = [0.2, 0.25, 0.18, 0.22, 0.2, 0.24, 0.19, 0.21, 0.23, 0.2]


def sample(step: int, combined: float, **rewards: float) -> dict:
    return {"step": step, "dataset": "qa", "prompt": "p", "completion": f"c{step}-{combined}", "combined": combined,
            "rewards": rewards, "tokens": 10}


def monitor(shape: RunShape, samples=(), **section) -> Monitor:
    return Monitor(MonitorSection(**section), shape, lambda: list(samples))


def feed(mon: Monitor, **series: list[float]) -> None:
    n = len(next(iter(series.values())))
    for i in range(n):
        mon.observe({key: values[i] for key, values in series.items()})


SHAPE = RunShape(anchors=["qa/answer"], judges={}, programmatic={"qa": ["qa/kw", "qa/answer"]},
                 per_dataset={"qa": ["qa/kw", "qa/answer"]})


def test_trend_is_kendall_and_theil_sen():
    up = trend(RISING)
    assert up.tau == pytest.approx(1.0) and up.p < 0.001 and up.rise == pytest.approx(0.9, abs=0.05)
    assert trend(FLAT).tau == 0 and trend(FLAT).p == 1 and trend(FLAT).rise == 0
    assert not trend(NOISY).rising(0.01, 0.2)


def test_anchor_divergence_fires_with_evidence_when_only_the_proxy_rises():
    samples = [sample(9, 1.0, **{"qa/kw": 1.0, "qa/answer": 0.0}), sample(9, 0.0, **{"qa/kw": 0.0, "qa/answer": 0.0}),
               sample(8, 1.0, **{"qa/kw": 1.0, "qa/answer": 0.0})]
    mon = monitor(SHAPE, samples, anchor="answer", kinds=["anchor_divergence"])
    feed(mon, combined=RISING, **{"qa/answer": FLAT})
    [alert] = mon.check(10)
    assert alert.kind == "anchor_divergence" and alert.statistic < alert.threshold == 0.01
    assert [e["step"] for e in alert.evidence][:2] == [9, 8] and alert.evidence[0]["combined"] == 1.0
    assert mon.check(11) == []                       # silenced for a window after it fired


@pytest.mark.parametrize("anchor", [RISING, [v * 0.8 for v in RISING]])
def test_anchor_divergence_is_quiet_when_the_anchor_rises_too(anchor):
    mon = monitor(SHAPE, anchor="answer", kinds=["anchor_divergence"])
    feed(mon, combined=RISING, **{"qa/answer": anchor})
    assert mon.check(10) == []


def test_no_sentinel_judges_before_a_full_window():
    mon = monitor(SHAPE, anchor="answer", window=10)
    feed(mon, combined=RISING[:9], zero_spread=[1.0] * 9, **{"qa/answer": FLAT[:9]})
    assert mon.check(9) == []


def test_a_small_rise_is_not_a_rise():
    mon = monitor(SHAPE, anchor="answer", kinds=["anchor_divergence"], min_rise=0.2)
    feed(mon, combined=[v / 10 for v in RISING], **{"qa/answer": FLAT})
    assert mon.check(10) == []


def test_dead_signal_needs_every_step_of_the_window_above_the_bound():
    mon = monitor(SHAPE, [sample(10, 0.0)], kinds=["dead_signal"])
    feed(mon, zero_spread=[1.0] * 10)
    [alert] = mon.check(10)
    assert alert.statistic == 1.0 and alert.threshold == 0.95 and alert.evidence
    mon = monitor(SHAPE, kinds=["dead_signal"])
    feed(mon, zero_spread=[1.0] * 9 + [0.5])
    assert mon.check(10) == []


def test_component_dominance_fires_when_a_share_grows_past_the_bound():
    mon = monitor(SHAPE, kinds=["component_dominance"])
    feed(mon, **{"qa/kw/variance_share": [0.5] * 10 + [0.97] * 10})
    [alert] = mon.check(20)
    assert alert.details["component"] == "qa/kw" and alert.statistic == pytest.approx(0.97)
    mon = monitor(SHAPE, kinds=["component_dominance"])      # dominant from the start: nothing grew
    feed(mon, **{"qa/kw/variance_share": [0.97] * 20})
    assert mon.check(20) == []


def test_length_drift_on_length_growth_and_on_repetition():
    mon = monitor(SHAPE, kinds=["length_drift"])
    feed(mon, completion_length=[10.0] * 10 + [10.0 + 3 * i for i in range(10)])
    [alert] = mon.check(20)
    assert alert.statistic_name == "length_growth" and alert.statistic >= 2
    mon = monitor(SHAPE, kinds=["length_drift"])
    feed(mon, completion_length=[10.0] * 20, repetition=[0.1 * i for i in range(10)] + [0.9] * 10)
    assert mon.check(10) == []                              # repetition still low
    mon = monitor(SHAPE, kinds=["length_drift"])
    feed(mon, completion_length=[10.0] * 10, repetition=[0.45 + 0.05 * i for i in range(10)])
    [alert] = mon.check(10)
    assert alert.statistic_name == "repetition_median"


def test_judge_divergence_needs_a_programmatic_reward_that_stays_flat():
    shape = RunShape(anchors=[], judges={"qa": ["qa/judge"]}, programmatic={"qa": ["qa/exact"]},
                     per_dataset={"qa": ["qa/judge", "qa/exact"]})
    mon = monitor(shape, kinds=["judge_divergence"])
    feed(mon, **{"qa/judge": RISING, "qa/exact": NOISY})
    [alert] = mon.check(10)
    assert alert.kind == "judge_divergence"
    mon = monitor(shape, kinds=["judge_divergence"])
    feed(mon, **{"qa/judge": RISING, "qa/exact": RISING})
    assert mon.check(10) == []


def test_heldout_divergence_uses_the_evaluations():
    mon = monitor(SHAPE, kinds=["heldout_divergence"])
    feed(mon, combined=RISING)
    for step, reward in ((2, 0.5), (5, 0.45), (8, 0.4)):
        mon.observe_eval(step, reward)
    [alert] = mon.check(10)
    assert alert.statistic < 0 and alert.details["evaluations"][-1] == [8, 0.4]
    mon = monitor(SHAPE, kinds=["heldout_divergence"])
    feed(mon, combined=RISING)
    for step, reward in ((2, 0.1), (5, 0.3), (8, 0.5)):
        mon.observe_eval(step, reward)
    assert mon.check(10) == []


def config(**monitor_section) -> GRPOConfigFile:
    cfg = quickstart_config(max_steps=12)
    cfg["monitor"] = monitor_section
    return GRPOConfigFile.model_validate(cfg)


def test_validate_the_anchor_names_a_reward():
    assert check_monitor(config(anchor="keyword"), "f.yaml") == []
    assert check_monitor(config(anchor="quickstart/keyword"), "f.yaml") == []
    [problem] = check_monitor(config(anchor="keywrd"), "f.yaml")
    assert problem.key == "monitor.anchor" and 'did you mean "keyword"' in problem.message


def test_validate_the_window_fits_the_run():
    [problem] = check_monitor(config(window=20), "f.yaml")
    assert problem.key == "monitor.window" and "max_steps 12" in problem.message
    assert check_monitor(config(window=20, enabled=False), "f.yaml") == []


def test_validate_refuses_thresholds_out_of_range(tmp_path, monkeypatch, capsys):
    from pipelines.runner import main
    from tests.grpo.training_runs import REPO, write_super

    monkeypatch.chdir(REPO)
    cfg = quickstart_config()
    cfg["monitor"] = {"on_alert": "halt", "alpha": 0.7, "max_zero_spread": 1.5, "kinds": ["anchor_drift"],
                      "anchor": "kw"}
    code = main(["--validate", "--super-config", str(write_super(tmp_path, cfg)), "--outputs", str(tmp_path / "o")])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2
    for key in ("monitor.on_alert", "monitor.alpha", "monitor.max_zero_spread", "monitor.kinds"):
        assert key in text, text


def test_batches_of_one_step_are_one_summary():
    from pipelines.grpo.monitor import per_step
    from pipelines.rewards.signal_metrics import StepSignal

    merged = per_step([StepSignal(1, {"combined": 0.0, "zero_spread": 1.0}), StepSignal(1, {"combined": 1.0}),
                       StepSignal(2, {"combined": 0.5})])
    assert merged == [{"combined": 0.5, "zero_spread": 1.0}, {"combined": 0.5}]
