"""Smoke test against a third-party OpenAI-compatible server: ``transformers serve`` with the tiny offline model.

The tiny model's text is random, so this asserts the protocol round trip (no transport failure, usage counted)
and that its unparseable answers are counted as parse failures, re-asked, and scored None.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.rewards.judge.judge_helpers import batch, make_judge, write_rubric

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_tiny_model(tiny_model_dir, tmp_path_factory):
    """``transformers serve <tiny_model_dir>`` on 127.0.0.1; skips with the reason when it cannot run here."""
    from transformers.utils.import_utils import is_serve_available
    if not is_serve_available():
        pytest.skip("transformers serve needs its extra dependencies (pip install 'transformers[serving]': "
                    "fastapi, uvicorn, pydantic, openai)")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "transformers.cli.transformers", "serve", str(tiny_model_dir),
                                 "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = Path(log_path).read_text(errors="replace")[-1500:]
                pytest.skip(f"transformers serve could not serve the local tiny model offline: {tail}")
            time.sleep(0.5)
        yield SimpleNamespace(base_url=f"http://127.0.0.1:{port}/v1", model=str(tiny_model_dir))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_round_trip_and_parse_failures_counted(served_tiny_model, tmp_path):
    reward = make_judge(served_tiny_model.base_url, write_rubric(tmp_path), eval_llm_name=served_tiny_model.model,
                        max_tokens=8, temperature=1.0, timeout_s=60, max_retries=1, format_retries=1,
                        max_concurrency=2, max_failure_rate=1.0, on_error="skip")
    prompts, completions = batch(["Joy: the city is lovely.", "The sea.", "A river.", "Hello"])
    scores = asyncio.run(reward(prompts, completions))
    reward.close()
    assert len(scores) == 4 and all(s is None or 0 <= s <= 10 for s in scores)
    m = reward.pop_metrics()
    assert m["judge/grader/failures"] == 0                        # every request got a chat completion back
    assert m["judge/grader/completion_tokens"] > 0 and m["judge/grader/prompt_tokens"] > 0
    unparsed = sum(s is None for s in scores)
    assert m["judge/grader/unparsed"] == unparsed
    assert m["judge/grader/parse_failures"] >= unparsed
    # each unparsed answer but the last of its sample was re-asked once
    assert m["judge/grader/calls"] == 4 + m["judge/grader/parse_failures"] - unparsed
    assert unparsed >= 1                                           # random text does not produce <score>N</score>


def test_check_judges_reports_an_unparseable_judge(served_tiny_model, tmp_path, capsys):
    from pipelines.data.config import DatasetEntry
    from pipelines.rewards.judge.check import check_judges

    entry = dict(name="llm_judge", eval_llm_name=served_tiny_model.model, eval_llm_base_url=served_tiny_model.base_url,
                 system_prompt_path=write_rubric(tmp_path), max_tokens=8,
                 score_types=[{"name": "score", "type": "score", "min": 0, "max": 10}])
    datasets = [DatasetEntry.model_validate({"path": "x.jsonl", "percentage": 1.0, "reward_funcs": [entry]})]
    problems = check_judges(datasets, "cfg.yaml")
    assert len(problems) == 1 and "could not be parsed" in problems[0].message
    assert problems[0].key == "datasets[0].reward_funcs[0]"
