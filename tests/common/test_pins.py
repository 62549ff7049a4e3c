"""Installed versions against the pins of requirements.txt / requirements-gpu.txt: read, compared, and warned
about by --validate and in run.log."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from pipelines.common import availability, pins
from pipelines.runner import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_cache():
    availability.clear_cache()
    yield
    availability.clear_cache()


def requirements(folder: Path, core: str, gpu: str = "") -> Path:
    (folder / "requirements.txt").write_text(core, encoding="utf-8")
    if gpu:
        (folder / "requirements-gpu.txt").write_text(gpu, encoding="utf-8")
    return folder


def test_only_exact_pins_whose_markers_hold_are_read(tmp_path):
    path = requirements(tmp_path, "# a comment\ntorch==2.13.0\n  trl==1.14.2   # inline comment\nfastapi\n"
                                  "numpy>=1.0\n-r other.txt\n--index-url https://example.invalid\n"
                                  "oldpkg==1.0 ; python_version < '3'\nnewpkg==2.0 ; python_version >= '3'\n"
                                  "not a requirement ==\n") / "requirements.txt"
    assert [(p.name, p.version) for p in pins.read_pins(path, True)] == [
        ("torch", "2.13.0"), ("trl", "1.14.2"), ("newpkg", "2.0")]


def test_the_shipped_requirement_files_are_read_whole():
    for name, required in pins.REQUIREMENT_FILES:
        text = (REPO / name).read_text(encoding="utf-8")
        expected = [line.split("==")[0].strip() for line in text.splitlines() if "==" in line.split("#")[0]]
        assert [p.name for p in pins.read_pins(REPO / name, required)] == expected


@pytest.mark.parametrize("pin, installed, same", [
    ("2.13.0", "2.13.0", True), ("2.13.0", "2.13.0+cpu", True), ("2.13", "2.13.0", True),
    ("2.13.0", "2.13.1", False), ("2.13.0+cpu", "2.13.0+cu128", False), ("2.13.0", "2.13.0rc1", False)])
def test_a_local_build_tag_matches_its_pin(pin, installed, same):
    assert pins.matches(pin, installed) is same


def test_mismatches_name_the_package_its_pin_and_what_is_installed(tmp_path):
    root = requirements(tmp_path, f"pytest==0.0.1\npyyaml=={availability.version_of('pyyaml')}\n"
                                  "no-such-package-xyz==1.0\n",
                        gpu="no-such-gpu-extra-xyz==2.0\ntrl==0.0.2\n")
    assert pins.version_mismatches(root) == [
        f"pytest: pinned 0.0.1 in requirements.txt, installed {pytest.__version__}",
        "no-such-package-xyz: pinned 1.0 in requirements.txt, not installed",
        f"trl: pinned 0.0.2 in requirements-gpu.txt, installed {availability.version_of('trl')}"]


def test_no_requirement_files_no_warning(tmp_path):
    assert pins.version_mismatches(tmp_path) == []
    assert pins.version_warning(tmp_path) is None


def an_older_trl(monkeypatch) -> None:
    """The installed trl reports 1.0.0 (the pin is requirements.txt's)."""
    real = availability.version_of
    monkeypatch.setattr(availability, "version_of", lambda name: "1.0.0" if name == "trl" else real(name))


def test_validate_warns_about_a_changed_version(tmp_path, monkeypatch, capsys):
    rc = main(["--super-config", str(REPO / "super_config.yaml"), "--outputs", str(tmp_path / "out"), "--validate"])
    assert rc == 0 and "installed versions differ" not in capsys.readouterr().out
    an_older_trl(monkeypatch)
    rc = main(["--super-config", str(REPO / "super_config.yaml"), "--outputs", str(tmp_path / "out"), "--validate"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "warning: installed versions differ from the pinned ones" in out
    assert "    trl: pinned 1.14.2 in requirements.txt, installed 1.0.0" in out.splitlines()


def test_a_run_logs_the_warning_in_run_log(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"log": str(tmp_path / "log.jsonl"), "run_name": "a"}))
    sc = tmp_path / "super.yaml"
    sc.write_text(yaml.safe_dump({"pipeline_order": [{"node": "tests.nodes_for_tests:record", "config": "a.yaml"}]}))
    an_older_trl(monkeypatch)
    assert main(["--super-config", str(sc), "--outputs", str(tmp_path / "out")]) == 0
    log = (tmp_path / "out" / "a" / "run.log").read_text()
    assert "WARNING pipelines.runner: installed versions differ from the pinned ones" in log
    assert "trl: pinned 1.14.2 in requirements.txt, installed 1.0.0" in log
    assert log.index("stack:") < log.index("installed versions differ") < log.index("): run dir")


def test_an_unreadable_requirements_file_gives_no_warning_and_no_failure(tmp_path):
    (tmp_path / "requirements.txt").write_bytes(b"trl==0.0.1\n\xff\xfe not utf-8\n")
    assert pins.version_warning(tmp_path) is None
