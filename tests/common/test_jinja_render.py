"""Issue 26 G3: every error a chat template raises while rendering is a ChatTemplateError (never a traceback), and
rendering is bounded in size (in process) and in CPU time and memory (the probe's child process)."""
from __future__ import annotations

import time

import pytest

from pipelines.common.chat_templates import TEMPLATE_NAMES, resolve_chat_template
from pipelines.common.jinja_render import ChatTemplateError, compile_template, probe_template

MESSAGES = [{"role": "user", "content": "Hello."}]


@pytest.mark.parametrize("template, words", [
    ("{{ raise_exception('no system role') }}", "raised an error while rendering: no system role"),
    ("{% include 'other.jinja' %}", "TypeError"),
    ("{{ ''.__class__.__mro__ }}", "SecurityError"),
    ("{{ range(10**9)|list }}", "OverflowError"),
    ("{{ messages[5].content.upper() }}", "UndefinedError"),
    ("{{ 'x' * 1000000000 }}", "passes the bound"),
    ("{{ [1, 2] * 10**8 }}", "passes the bound"),
    ("{{ 7 ** 100000000 }}", "too large"),
])
def test_every_rendering_error_is_a_chat_template_error(template, words):
    started = time.monotonic()
    with pytest.raises(ChatTemplateError, match=words.replace("(", r"\(")):
        compile_template(template).render(messages=MESSAGES, add_generation_prompt=True)
    assert time.monotonic() - started < 2


def test_output_is_capped_while_it_streams():
    loop = "{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}"     # 10 M characters, 100 at a time
    with pytest.raises(ChatTemplateError, match="passes 1000000 characters"):
        compile_template(loop).render(messages=MESSAGES)


@pytest.mark.parametrize("template, words", [
    ("{{ 'x'|center(1000000000) }}", "memory"),                          # folded at compile time: a child's job
    ("{{ '%1000000000d' % 1 }}", "memory"),
    ("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}", "CPU"),
    ("{{ raise_exception('never') }}", "on every sample conversation"),
])
def test_the_probe_bounds_what_the_process_cannot(template, words):
    started = time.monotonic()
    problem = probe_template(template)
    assert problem is not None and words in problem
    assert time.monotonic() - started < 30          # 1 s of CPU; the wall clock only guards a loaded machine


def test_the_probe_accepts_real_templates_that_refuse_some_conversations():
    """Mistral-style templates raise_exception on a system turn: that is a refusal of one conversation, not a
    broken template."""
    picky = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
             "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert probe_template(picky) is None
    indexes = "{{ messages[2]['content'] | upper }}{{ messages[0].content.strip() }}"   # fails on 1-2 turn chats
    assert probe_template(indexes) is None
    assert all(probe_template(t) is None for t in TEMPLATE_NAMES.values())


def test_a_config_template_that_cannot_render_is_refused_by_the_field_validator():
    with pytest.raises(ValueError, match="cannot be used: rendering failed: SecurityError"):
        resolve_chat_template("{{ ''.__class__.__mro__ }}")
