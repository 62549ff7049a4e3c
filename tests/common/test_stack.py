"""What a run records of its stack: versions, CUDA facts, the git commit; the header of run.log."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.common import stack
from pipelines.common.availability import version_of

REPO = Path(__file__).resolve().parents[2]


def git(folder: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def test_collect_stack_holds_python_packages_cuda_and_commit():
    found = stack.collect_stack()
    assert found["python"] == platform.python_version()
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "pydantic"):
        assert found["packages"][name] == version_of(name), name
    assert "no_such_package" not in found["packages"]
    assert set(found["cuda"]) == {"torch_cuda", "available", "gpus"}
    assert list(found["packages"]) == [n for n in stack.STACK_PACKAGES if n in found["packages"]]


def test_cuda_facts_match_torch_once_it_is_imported():
    import torch

    facts = stack.cuda_facts()
    assert facts["torch_cuda"] == torch.version.cuda
    assert facts["available"] is torch.cuda.is_available()
    assert len(facts["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_torch_cuda_build_is_read_from_version_py_without_importing_torch(tmp_path):
    (tmp_path / "version.py").write_text("from typing import Optional\n__version__ = '2.13.0+cu128'\n"
                                         "debug = False\ncuda: Optional[str] = '12.8'\nhip: Optional[str] = None\n")
    assert stack.torch_cuda_build(tmp_path) == "12.8"
    (tmp_path / "version.py").write_text("cuda: Optional[str] = None\n")
    assert stack.torch_cuda_build(tmp_path) is None
    code = ("import sys\nfrom pipelines.common import stack\n"
            "print(repr(stack.torch_cuda_build()), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    import torch

    assert out.stdout.split() == [repr(torch.version.cuda), "False"], out.stderr


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """An ``nvidia-smi`` on PATH whose ``-L`` listing shows three GPUs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\ncat <<'EOF'\nGPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa-0000)\n"
                      "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb-1111)\nGPU 2: NVIDIA L4 (UUID: GPU-cccc-2222)\n"
                      "EOF\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return monkeypatch


def test_gpu_names_follow_cuda_visible_devices(fake_smi):
    assert stack.visible_gpu_names() == ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA L4"]
    fake_smi.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-aaaa")
    assert stack.visible_gpu_names() == ["NVIDIA L4", "NVIDIA H100 80GB HBM3"]
    fake_smi.setenv("CUDA_VISIBLE_DEVICES", "1,7,0")        # CUDA stops at the first device it cannot use
    assert stack.visible_gpu_names() == ["NVIDIA A100-SXM4-40GB"]
    fake_smi.setenv("CUDA_VISIBLE_DEVICES", "")
    assert stack.visible_gpu_names() == []


def test_no_driver_means_no_gpu_names(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert stack.visible_gpu_names() == []


def test_git_commit_of_this_checkout():
    commit = stack.git_commit()
    head = git(REPO, "rev-parse", "HEAD")
    dirty = bool(git(REPO, "status", "--porcelain", "--untracked-files=no"))
    assert commit == head + ("-dirty" if dirty else "")


def test_git_commit_marks_a_changed_tree_and_is_none_outside_a_checkout(tmp_path):
    assert stack.git_commit(tmp_path) is None
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    git(repo, "add", "a.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = git(repo, "rev-parse", "HEAD")
    assert stack.git_commit(repo) == head
    (repo / "untracked.txt").write_text("new\n")      # as `git describe --dirty`: untracked files do not count
    assert stack.git_commit(repo) == head
    (repo / "a.txt").write_text("two\n")
    assert stack.git_commit(repo) == f"{head}-dirty"


def test_stack_lines_name_every_part():
    collected = {"python": "3.11.7", "platform": "Linux-x86_64", "git_commit": "abc123-dirty",
                 "packages": {"torch": "2.13.0+cu128", "trl": "1.14.2", "vllm": "0.30.0"},
                 "cuda": {"torch_cuda": "12.8", "available": True, "gpus": ["NVIDIA H100 80GB HBM3"]}}
    assert stack.stack_lines(collected) == [
        "Python 3.11.7 (Linux-x86_64)", "torch 2.13.0+cu128 (CUDA 12.8 build); GPUs: NVIDIA H100 80GB HBM3",
        "packages: trl 1.14.2, vllm 0.30.0", "git commit: abc123-dirty"]
    collected.update(git_commit=None, cuda={"torch_cuda": None, "available": False, "gpus": []})
    lines = stack.stack_lines(collected)
    assert lines[1] == "torch 2.13.0+cu128 (CPU build); no CUDA device"
    assert lines[-1] == "git commit: unknown (not a git checkout)"


def test_run_log_starts_with_the_stack(tmp_path):
    """A real run (a test node, its own interpreter): run.log's first record is the stack, and the runner
    imported no torch for it."""
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"log": str(tmp_path / "log.jsonl"), "run_name": "a"}))
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "tests.nodes_for_tests:record", "config": "a.yaml"}]}))
    code = ("import sys, runpy; sys.argv=['run_pipeline.py','--super-config',%r,'--outputs',%r]\n"
            "try:\n    runpy.run_path('run_pipeline.py', run_name='__main__')\n"
            "except SystemExit as e:\n    print('TORCH', 'torch' in sys.modules, file=sys.stderr); raise\n"
            ) % (str(sc), str(tmp_path / "out"))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "TORCH False" in out.stderr
    log = (tmp_path / "out" / "a" / "run.log").read_text().splitlines()
    assert log[0].endswith("INFO pipelines.common.stack: stack:")
    assert log[1].strip() == f"Python {platform.python_version()} ({platform.platform()})"
    assert log[2].strip().startswith(f"torch {version_of('torch')} (")
    assert f"trl {version_of('trl')}" in log[3]
    assert log[4].strip() == f"git commit: {stack.git_commit()}"


def test_one_listing_serves_the_count_and_the_names(fake_smi):
    """``nvidia-smi -L`` is read once by common/devices: the launcher's count and the stack's names agree."""
    from pipelines.common import devices

    assert [(g.index, g.uuid) for g in devices.listed_gpus()] == [("0", "GPU-aaaa-0000"), ("1", "GPU-bbbb-1111"),
                                                                  ("2", "GPU-cccc-2222")]
    assert devices.visible_gpu_count() == len(devices.visible_gpu_names()) == 3
    fake_smi.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert devices.visible_gpu_count() == 2 and devices.visible_gpu_names() == ["NVIDIA L4", "NVIDIA H100 80GB HBM3"]
