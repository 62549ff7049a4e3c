"""One redaction for every output (F5, issue 15 item 4): whole-token masking of long secrets, secret fields at
any length, URL credentials and secret query parameters; the console, run.log, rank error files and printed
errors all use it."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.common.config_io import EnvResolver
from pipelines.common.redaction import redact_config as redact
from pipelines.common.redaction import (RedactingFilter, is_secret_name, redact_text, register_secrets)

REPO = Path(__file__).resolve().parents[2]
LONG = "sk-proj-7Hq2Lr9XwT4vBn8KcZ1m"


def test_short_keys_never_garble_text():
    text = "judge at http://localhost:8011/v1, max_failure_rate 0.5, rubric {topic}"
    assert redact_text(text, {"x", "local", "k"}) == text


def test_long_key_is_masked_where_it_stands_as_a_token():
    text = f"Authorization: Bearer {LONG}; url=/v1/{LONG}/chat key:{LONG}."
    out = redact_text(text, {LONG})
    assert LONG not in out and out.count("***") == 3 and out.startswith("Authorization: Bearer ***;")


def test_url_credentials_and_secret_query_parameters():
    out = redact_text("GET http://bob:hunter2pw@judge:8000/v1?api_key=abc&model=m&token=t&sig=s and "
                      "https://h/x?key=K2&limit=5")
    assert out == "GET http://***@judge:8000/v1?api_key=***&model=m&token=***&sig=*** and https://h/x?key=***&limit=5"


@pytest.mark.parametrize("name,secret", [("eval_llm_api_key", True), ("HF_TOKEN", True), ("password", True),
                                         ("authorization", True), ("service_api_key", True),
                                         ("max_tokens", False), ("eos_token", False), ("keywords", False),
                                         ("max_new_tokens", False), ("tokenizer", False), ("pad_token", False)])
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


def test_short_secret_is_masked_in_its_own_field_only():
    env = EnvResolver({"JUDGE_API_KEY": "x", "LOCAL_TOKEN": "local"})
    problems: list = []
    raw = env.resolve({"judge": {"eval_llm_api_key": "${JUDGE_API_KEY}", "base_url": "http://u:${LOCAL_TOKEN}@h/v1",
                                 "header": "id-${LOCAL_TOKEN}-x", "max_failure_rate": 0.5},
                       "note": "localhost is fine, so is max"}, "c.yaml", problems)
    red = redact(raw, env.secret_values, env.secret_fields)
    assert red == {"judge": {"eval_llm_api_key": "***", "base_url": "http://***@h/v1", "header": "id-***-x",
                             "max_failure_rate": 0.5}, "note": "localhost is fine, so is max"}


def test_filter_masks_message_args_and_traceback():
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "key %s at %s", (LONG, "http://a:b@h/"), None)
    try:
        raise ValueError(f"bad {LONG}")
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactingFilter({LONG}).filter(record)
    text = logging.Formatter().format(record)
    assert LONG not in text and "http://***@h/" in text and "ValueError: bad ***" in text


def test_rank_error_files_are_redacted(tmp_path):
    from pipelines.launch import RANK_ERRORS, write_rank_error

    register_secrets([LONG])
    write_rank_error(tmp_path, f"Traceback ...\nRuntimeError: 401 for key {LONG} at http://u:pw12345678@h/v1\n")
    text = (tmp_path / RANK_ERRORS / "rank0.txt").read_text()
    assert LONG not in text and "pw12345678" not in text and "RuntimeError: 401 for key ***" in text


def test_console_run_log_and_files_never_show_a_key(tmp_path):
    """F5: the console printed the key (only run.log was filtered); a literal URL password leaked everywhere."""
    literal = "hunter2-literal-pw"
    cfg = {"run_name": "leaky", "key": "${LEAK_API_KEY}", "url": "http://user:${LEAK_API_KEY}@127.0.0.1:9/v1",
           "literal_url": f"http://bob:{literal}@judge.example/v1?api_key={literal}"}
    (tmp_path / "leak.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "super.yaml").write_text(yaml.safe_dump(
        {"pipeline_order": [{"node": "tests.nodes_for_tests:leak", "config": "leak.yaml"}]}))
    env = dict(os.environ, LEAK_API_KEY=LONG, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), "--super-config", "super.yaml",
                           "--outputs", "out"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    console = proc.stdout + proc.stderr
    assert "request failed" in console and "giving up on http://***@127.0.0.1:9/v1" in console
    files = "".join(p.read_text() for p in (tmp_path / "out" / "leaky").iterdir() if p.is_file())
    assert "request failed" in files
    for text in (console, files):
        assert LONG not in text and literal not in text
