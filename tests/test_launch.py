"""Multi-process node runs: the runner starts ranks through a launcher and propagates their failures."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from pipelines.launch import build_command
from pipelines.runner import main


def _pipeline(tmp_path: Path, node: str, launch: dict | None = None) -> Path:
    cfg = {"run_name": "multi", **({"launch": launch} if launch else {})}
    (tmp_path / "n.yaml").write_text(yaml.safe_dump(cfg))
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": node, "name": "n", "config": "n.yaml"}]}))
    return sc


def test_two_ranks_run_under_torchrun_on_cpu(tmp_path):
    sc = _pipeline(tmp_path, "tests.nodes_for_tests:record_rank")
    rc = main(["--super-config", str(sc), "--outputs", str(tmp_path / "out"), "--num-processes", "2"])
    assert rc == 0
    run_dir = tmp_path / "out" / "multi"
    ranks = [json.loads((run_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["world_size"], r["launched"]) for r in ranks] == [(0, 2, True), (1, 2, True)]
    assert [r["lock_held"] for r in ranks] == [True, True]      # F3: the run dir stays locked while ranks run
    from pipelines.common.runlock import busy_holder
    assert busy_holder(run_dir) is None                          # ... and is free once the launch has ended
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["outputs"]["rank_file"].endswith("rank0.json")


def test_failing_rank_fails_the_node_with_its_error(tmp_path, capsys):
    sc = _pipeline(tmp_path, "tests.nodes_for_tests:fail_on_rank1", launch={"num_processes": 2})
    rc = main(["--super-config", str(sc), "--outputs", str(tmp_path / "out")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "rank1: ValueError: rank one refuses" in err
    assert json.loads((tmp_path / "out" / "multi" / "manifest.json").read_text())["status"] == "failed"


def test_accelerate_command_carries_the_launch_section():
    launch = {"num_machines": 2, "machine_rank": 1, "main_process_ip": "10.0.0.1", "main_process_port": 29501,
              "accelerate_config": "pipelines/grpo/accelerate/zero2.yaml"}
    cmd = build_command({"launch": launch}, 4, ["--only", "0"], use_accelerate=True)
    joined = " ".join(cmd)
    assert "accelerate.commands.launch --num_processes 8 --num_machines 2 --machine_rank 1" in joined
    assert "--config_file pipelines/grpo/accelerate/zero2.yaml" in joined
    assert "--main_process_ip 10.0.0.1 --main_process_port 29501" in joined
    assert joined.endswith("-m pipelines.worker --only 0")
    cpu = " ".join(build_command({}, 2, [], use_accelerate=False))
    assert "torch.distributed.run --nproc_per_node 2 --nnodes 1 --node_rank 0 --standalone" in cpu


def test_shipped_accelerate_configs_load(repo_root):
    from accelerate.commands.config.config_args import load_config_from_file
    kinds = {}
    for name in ("ddp", "zero2", "zero3", "fsdp"):
        cfg = load_config_from_file(str(repo_root / "pipelines/grpo/accelerate" / f"{name}.yaml"))
        kinds[name] = cfg.distributed_type.value
    assert kinds == {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}


def test_launch_section_checks():
    from pipelines.common.schema import validate_model
    from pipelines.grpo.checks import check_launch
    from pipelines.grpo.config import GRPOConfigFile
    raw = yaml.safe_load((Path(__file__).parents[1] / "pipelines/grpo/configs/quickstart.yaml").read_text())
    raw["launch"] = {"num_machines": 2, "machine_rank": 2, "accelerate_config": "nope.yaml"}
    cfg, _ = validate_model(GRPOConfigFile, raw, "c.yaml")
    keys = [p.key for p in check_launch(cfg, "c.yaml")]
    assert keys == ["launch.accelerate_config", "launch.main_process_ip", "launch.machine_rank"]


def test_evaluation_with_parameter_sharding_is_refused(repo_root):
    from pipelines.common.schema import validate_model
    from pipelines.grpo.checks import check_launch
    from pipelines.grpo.config import GRPOConfigFile
    raw = yaml.safe_load((repo_root / "pipelines/grpo/configs/quickstart.yaml").read_text())
    raw["evaluation"] = {"rows": 4}
    problems = {}
    for name in ("ddp", "zero2", "zero3", "fsdp"):
        raw["launch"] = {"accelerate_config": str(repo_root / "pipelines/grpo/accelerate" / f"{name}.yaml")}
        cfg, _ = validate_model(GRPOConfigFile, raw, "c.yaml")
        problems[name] = [p.key for p in check_launch(cfg, "c.yaml")]
    assert problems == {"ddp": [], "zero2": [], "zero3": ["evaluation"], "fsdp": ["evaluation"]}


def test_rank_started_outside_a_launch_refuses(tmp_path, capsys):
    """A rank runs only under the lock of the runner that launched it (F3)."""
    sc = _pipeline(tmp_path, "tests.nodes_for_tests:record_rank")
    (tmp_path / "out" / "multi").mkdir(parents=True)
    rc = main(["--super-config", str(sc), "--outputs", str(tmp_path / "out"), "--launched-rank"])
    assert rc == 2 and "a rank runs only under the runner that launched it" in capsys.readouterr().err
    assert not (tmp_path / "out" / "multi" / "rank0.json").exists()
