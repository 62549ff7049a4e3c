"""Issue 26 G7: a config-named module that calls os._exit, raises KeyboardInterrupt or sleeps at import is refused
as a config problem (found by importing it first in a watched child process), in well under 5 s; ordinary modules,
this project's and installed packages' import as before."""
from __future__ import annotations

import sys
import time

import pytest

from pipelines.common.import_probe import is_probed, probe_import
from pipelines.common.imports import ImportPathError, import_attribute

BAD = "tests.rewards.bad_imports"


@pytest.mark.parametrize("module, words", [
    ("os_exits_at_import", "ended the process with exit code 7"),
    ("interrupts_at_import", "raised KeyboardInterrupt while being imported"),
    ("sleeps_at_import", "without using the CPU"),
])
def test_a_module_that_ends_interrupts_or_stalls_at_import_is_refused(module, words):
    started = time.monotonic()
    with pytest.raises(ImportPathError) as err:
        import_attribute(f"{BAD}.{module}:fn")
    assert words in str(err.value) and f"{BAD}.{module}:fn" in str(err.value)
    assert f"{BAD}.{module}" not in sys.modules          # never imported into this process
    assert time.monotonic() - started < 5


def test_ordinary_failures_are_still_reported_by_the_in_process_import():
    with pytest.raises(ImportPathError, match="raised RuntimeError: broken at import"):
        import_attribute(f"{BAD}.raises_at_import:fn")
    assert probe_import("tests.nodes_for_tests") is None


def test_which_modules_are_probed():
    assert not is_probed("pipelines.rewards.builtin")       # this project
    assert not is_probed("json") and not is_probed("yaml")  # standard library, installed package
    assert not is_probed("no_such_module_xyz")              # the in-process import names it
    assert is_probed("tests.rewards.bad_imports.sleeps_at_import")
