"""Population members on one shared base model: optimizer state carried over, mutated hyperparameters applied."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.common.config_io import load_yaml
from pipelines.common.io import JsonlAppender, read_jsonl
from pipelines.grpo.hpo.config import GRPOHPOConfigFile
from pipelines.grpo.hpo.members import restore_hparams, snapshot_hparams

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "pipelines" / "grpo" / "configs" / "quickstart_hpo.yaml"


def _optimizer(lr: float, wd: float, schedule=lambda step: 1.0):
    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([param], lr=lr, weight_decay=wd, betas=(0.9, 0.99))
    return param, opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def _train(param, opt, sched, steps: int) -> None:
    for _ in range(steps):
        param.grad = torch.ones_like(param)
        opt.step()
        sched.step()


@pytest.mark.parametrize("schedule", [lambda s: 1.0, lambda s: max(0.0, 1 - s / 10)], ids=["constant", "linear"])
def test_restore_keeps_configured_hparams_and_the_checkpoints_state(schedule):
    param, opt, sched = _optimizer(0.1, 0.5, schedule)
    _train(param, opt, sched, 3)
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()

    param2, opt2, sched2 = _optimizer(0.01, 0.0, schedule)   # the mutated member: new lr and weight decay
    fresh = snapshot_hparams(opt2, sched2)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    # what a plain resume gives: the parent's hyperparameters (the bug this guards against)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1 * schedule(3))
    assert opt2.param_groups[0]["weight_decay"] == 0.5
    restore_hparams(opt2, sched2, fresh)
    group = opt2.param_groups[0]
    assert group["lr"] == pytest.approx(0.01 * schedule(3))
    assert group["weight_decay"] == 0.0
    assert sched2.get_last_lr() == [pytest.approx(0.01 * schedule(3))]
    assert int(opt2.state[opt2.param_groups[0]["params"][0]]["step"]) == 3   # Adam moments carried over
    _train(param2, opt2, sched2, 1)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.01 * schedule(4))  # the schedule goes on from 0.01


@pytest.fixture(scope="module")
def population(tiny_model_dir, tmp_path_factory):
    """A PopulationTrainer on the tiny model (the quickstart config, small)."""
    from pipelines.data.sampling import sample_with_tokenizer
    from pipelines.grpo.inputs import data_spec
    from pipelines.grpo.hpo.members import PopulationTrainer
    from pipelines.grpo.model import load_tokenizer
    from pipelines.rewards.engine import RewardStack

    raw = load_yaml(QUICKSTART)
    raw["model"]["base_model_name"] = str(tiny_model_dir)
    raw["run_name"] = "members"
    raw["dataset_settings"]["total_rows"] = 24
    raw["evaluation"]["rows"] = 4
    raw["hpo"]["steps_per_generation"] = 2
    raw["datasets"][0]["path"] = str(REPO / "inputs" / "quickstart.jsonl")
    cfg = GRPOHPOConfigFile.model_validate(raw)
    run_dir = tmp_path_factory.mktemp("members")
    tok = load_tokenizer(str(tiny_model_dir), None)
    sample = sample_with_tokenizer(data_spec(cfg), tok, "members.yaml")
    stack = RewardStack(cfg.reward, cfg.datasets)
    writer = JsonlAppender(run_dir / "metrics.jsonl")
    pop = PopulationTrainer(cfg, run_dir, str(tiny_model_dir), tok, sample, stack, writer)
    yield pop, run_dir
    writer.close()
    stack.close()


class Recorder:
    """Records, at every optimizer step, the learning rate and Adam step count, and the adapter at train begin."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Recorder(TrainerCallback):
            def __init__(self):
                self.lrs, self.adam_steps, self.moments, self.begin = [], [], [], None

            def on_train_begin(self, args, state, control, model=None, **kwargs):
                from peft import get_peft_model_state_dict
                self.begin = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}

            def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
                self.lrs.append(optimizer.param_groups[0]["lr"])
                states = [optimizer.state[p] for g in optimizer.param_groups for p in g["params"]
                          if p in optimizer.state]
                self.adam_steps.append(int(states[0]["step"]) if states else 0)
                self.moments.append(sum(float(s["exp_avg"].abs().sum()) for s in states))   # Adam's 1st moments

        return _Recorder()


def _adapter(checkpoint: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(checkpoint / "adapter_model.safetensors"))


def _saved_moments(checkpoint: Path) -> float:
    saved = torch.load(checkpoint / "optimizer.pt", map_location="cpu", weights_only=True)
    return sum(float(s["exp_avg"].abs().sum()) for s in saved["state"].values())


def _same(a: dict, b: dict) -> bool:
    """Equal adapters wherever each lives (the model may be on CUDA, a saved or initial state on the CPU)."""
    return a.keys() == b.keys() and all(torch.equal(a[k].detach().cpu(), b[k].detach().cpu()) for k in a)


@pytest.mark.slow
def test_a_mutated_member_resumes_its_parent_with_its_own_learning_rate(population):
    pop, run_dir = population
    parent = {"learning_rate": 0.03, "beta": 0.02, "num_generations": 4, "temperature": 1.0}
    rec0 = Recorder()
    ckpt0, fitness, trainer = pop.train(1, "g1m0", parent, None, run_dir / "gen-0001" / "g1m0", [rec0])
    assert ckpt0.name == "checkpoint-2" and (ckpt0 / "optimizer.pt").is_file()   # generation 1 ends at step 2
    assert rec0.lrs == [pytest.approx(0.03)] * 2
    # beta > 0: the reference is the base model (TRL's copy of the shared adapter is removed), the member trains
    assert set(trainer.model.peft_config) == {"default"}
    assert any(p.requires_grad for n, p in trainer.model.named_parameters() if "lora_" in n)
    assert "eval/reward_mean" in fitness
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("member") == "g1m0" and "eval/accuracy" in r]
    assert [(r["generation"], r["step"], r["eval/reward_mean"]) for r in evals] == \
        [(1, 2, fitness["eval/reward_mean"])]
    pop.release(trainer)

    # a clone whose learning rate is NOT reset: the parent's adapter and Adam moments, its own learning rate
    child = dict(parent, learning_rate=0.004, num_generations=2)
    rec1 = Recorder()
    ckpt1, _, trainer = pop.train(2, "g2m1", child, ckpt0, run_dir / "gen-0002" / "g2m1", [rec1])
    assert ckpt1.name == "checkpoint-4"
    assert _same(rec1.begin, _adapter(ckpt0))
    assert rec1.adam_steps == [2, 3]
    assert rec1.moments[0] == pytest.approx(_saved_moments(ckpt0), rel=1e-5) and rec1.moments[0] > 0
    assert rec1.lrs == [pytest.approx(0.004)] * 2
    assert trainer.args.num_generations == 2
    pop.release(trainer)
    logged = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("member") == "g2m1" and "loss" in r]
    assert [r["step"] for r in logged] == [3, 4]
    assert all(r["learning_rate"] == pytest.approx(0.004) for r in logged)

    # with the optimizer reset (AgileRL, on a learning-rate mutation): the parent's adapter, Adam from zero
    rec3 = Recorder()
    _, _, trainer = pop.train(2, "g2m2", child, ckpt0, run_dir / "gen-0002" / "g2m2", [rec3], reset_optimizer=True)
    assert _same(rec3.begin, _adapter(ckpt0))
    assert rec3.adam_steps == [0, 1] and rec3.moments[0] == 0.0   # no state before the first step
    assert rec3.lrs == [pytest.approx(0.004)] * 2                  # the schedule goes on from the child's rate
    assert trainer.state.global_step == 4
    pop.release(trainer)

    # a fresh member of generation 1 starts from the fresh adapter, not from what the shared model last held
    rec2 = Recorder()
    _, _, trainer = pop.train(1, "g1m1", parent, None, run_dir / "gen-0001" / "g1m1", [rec2])
    assert _same(rec2.begin, pop.init_state)
    pop.release(trainer)
