"""The HTTP client's per-request log lines (httpx, openai) stay out of the console and run.log unless -v."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.judge_server import JudgeServer, Reply

TAGS = "<helpfulness>8</helpfulness><correct>1</correct><accuracy>4</accuracy>"


@pytest.mark.parametrize("verbose", [False, True])
def test_judge_requests_are_logged_only_with_verbose(repo_root, tmp_path, verbose):
    super_config = tmp_path / "super.yaml"
    super_config.write_text("pipeline_order:\n  - node: grpo\n    config: "
                            f"{repo_root / 'pipelines/grpo/configs/rubric_judge.yaml'}\n")
    with JudgeServer(lambda req: Reply(content=TAGS)) as srv:
        env = {**os.environ, "JUDGE_BASE_URL": srv.base_url, "JUDGE_API_KEY": "sk-http-log-test"}
        out = subprocess.run([sys.executable, "run_pipeline.py", "--super-config", str(super_config), "--validate",
                              "--check-judges", "--outputs", str(tmp_path / "out"), *(["-v"] if verbose else [])],
                             cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
        calls = len(srv.requests)
    assert out.returncode == 0 and calls == 2, out.stderr[-2000:]
    logged = out.stderr.count("HTTP Request: POST")
    assert logged == (2 if verbose else 0), out.stderr[-2000:]
    assert "sk-http-log-test" not in out.stdout + out.stderr
