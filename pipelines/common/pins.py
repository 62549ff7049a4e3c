"""Installed versions against the pins of ``requirements.txt`` and ``requirements-gpu.txt``.

The project is tested with the pinned versions; another installed version (a hand-upgraded trl, an older
torch) is allowed but is the first suspect when a run behaves differently, so ``--validate`` prints each
difference and every run repeats it in ``run.log``. Only exact pins (``name==version``) are compared; a local
build tag is ignored as PEP 440 says (torch ``2.13.0+cpu`` matches ``2.13.0``). A package pinned in
``requirements.txt`` but not installed is named too; a GPU extra only when it is installed (a CPU machine has
none). Where the requirements files are absent (the package installed outside its checkout) nothing is
compared.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pipelines.common import availability
from pipelines.common.stack import PROJECT_ROOT

log = logging.getLogger(__name__)
# (file, whether its packages must be installed): the core stack, then the GPU extras.
REQUIREMENT_FILES = (("requirements.txt", True), ("requirements-gpu.txt", False))
_COMMENT_RE = re.compile(r"(^|\s)#.*$")


@dataclass(frozen=True)
class Pin:
    """One ``name==version`` line of a requirements file."""

    name: str
    version: str
    file: str
    required: bool     # a package of requirements.txt (not a GPU extra)


def read_pins(path: Path, required: bool) -> list[Pin]:
    """The exact pins of one requirements file whose environment markers hold here; other lines (ranges,
    unpinned names, pip options, URLs) are skipped."""
    from packaging.requirements import InvalidRequirement, Requirement

    pins = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = _COMMENT_RE.sub("", raw).strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        specs = list(req.specifier)
        if req.marker is not None and not req.marker.evaluate():
            continue
        if len(specs) == 1 and specs[0].operator in ("==", "==="):
            pins.append(Pin(req.name, specs[0].version, path.name, required))
    return pins


def matches(pin: str, installed: str) -> bool:
    """Whether ``installed`` satisfies ``==pin`` (a local tag such as ``+cpu`` is ignored)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion

    try:
        return SpecifierSet(f"=={pin}").contains(installed, prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return pin == installed


def version_mismatches(root: Optional[Path] = None) -> list[str]:
    """One line per pinned package whose installed version differs: its name, pin (and file) and what is
    installed. [] when the requirements files are not there."""
    root = PROJECT_ROOT if root is None else root
    lines = []
    for name, required in REQUIREMENT_FILES:
        path = root / name
        if not path.is_file():
            continue
        for pin in read_pins(path, required):
            installed = availability.version_of(pin.name)
            if installed is None:
                if pin.required:
                    lines.append(f"{pin.name}: pinned {pin.version} in {pin.file}, not installed")
            elif not matches(pin.version, installed):
                lines.append(f"{pin.name}: pinned {pin.version} in {pin.file}, installed {installed}")
    return lines


def version_warning(root: Optional[Path] = None) -> Optional[str]:
    """The warning for :func:`version_mismatches` (a headline, then one indented line per package), or None
    when every pin holds."""
    try:
        mismatches = version_mismatches(root)
    except (OSError, ImportError, ValueError) as exc:   # an unreadable file: no warning, never a failed run
        log.debug("pins not compared: %s", exc)
        return None
    if not mismatches:
        return None
    return ("installed versions differ from the pinned ones (the project is tested with the pins; "
            "`bash linux.sh` installs them):\n    " + "\n    ".join(mismatches))
