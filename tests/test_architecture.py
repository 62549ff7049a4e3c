"""The layout's rules, read from the source with ``ast`` (docs/architecture.md explains them):

- no import cycles among the project's modules, lazy (in-function) imports included;
- the shared layers (``common``, ``data``, ``rewards``) import no node package, except the one documented plugin
  seam: the reward catalog imports the user-editable files by name;
- no module imports another module's private names, and nothing patches ``sys.path``;
- the GRPO node package holds no data or judge modules.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = ("pipelines.common", "pipelines.data", "pipelines.rewards")
NODE_PACKAGES = ("pipelines.grpo", "pipelines.rollout", "pipelines.registry", "pipelines.runner",
                 "pipelines.planning", "pipelines.validation", "pipelines.launch", "pipelines.worker", "pipelines.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((REPO / "pipelines").rglob("*.py"))}


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for every import statement, at any depth (lazy ones too), plus
    ``importlib.import_module("literal")`` calls."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.append((node.args[0].value, []))
    return out


def graph() -> dict[str, set[str]]:
    mods = project_modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for target, names in imports_of(path):
            for candidate in [target] + [f"{target}.{n}" for n in names]:
                if candidate in mods and candidate != name:
                    edges[name].add(candidate)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_shared_layers_import_no_node_package():
    bad = []
    for name, targets in graph().items():
        if name.startswith(SHARED):
            bad += [f"{name} -> {t}" for t in targets if t.startswith(NODE_PACKAGES)]
    assert bad == []


def test_the_plugin_seam_is_the_documented_one():
    """The catalog imports the user-editable files by name (not an import statement); they are the GRPO
    node's reward_functions.py and post_processors.py, and they exist."""
    from pipelines.rewards import catalog

    assert catalog.PLUGIN_MODULES == ("pipelines.grpo.reward_functions", "pipelines.grpo.post_processors")
    for name in catalog.PLUGIN_MODULES:
        assert (REPO / (name.replace(".", "/") + ".py")).is_file()
    assert "plugin seam" in (REPO / "docs" / "architecture.md").read_text()


@pytest.mark.parametrize("folder", ["pipelines", "cli_utils", "bench", "tests"])
def test_no_private_names_imported_across_modules(folder):
    bad = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for target, names in imports_of(path):
            if target.startswith(("pipelines", "cli_utils", "tests")):
                bad += [f"{path.relative_to(REPO)}: {target}.{n}" for n in names if n.startswith("_")]
    assert bad == []


def test_nothing_patches_sys_path():
    files = [REPO / "run_pipeline.py"] + [p for d in ("pipelines", "cli_utils", "bench", "tests")
                                          for p in (REPO / d).rglob("*.py")]
    assert [str(p.relative_to(REPO)) for p in files if "sys.path" in p.read_text(encoding="utf-8")
            and p.name != "test_architecture.py"] == []


def test_grpo_package_holds_no_data_or_judge_modules():
    names = [p.name for p in (REPO / "pipelines" / "grpo").rglob("*.py")]
    assert [n for n in names if n.startswith(("data", "judge"))] == []


def test_module_docstrings_point_inside_the_repo():
    bad = [str(p.relative_to(REPO)) for p in (REPO / "pipelines").rglob("*.py")
           if "../shared" in p.read_text(encoding="utf-8")]
    assert bad == []


def test_no_virtualenv_is_tracked():
    """A worktree's ``.venv`` is often a symlink, which the ``.venv/`` ignore pattern did not match: committed
    and fast-forwarded into a checkout, it replaced that checkout's real .venv folder. Untrack it with
    ``git rm --cached .venv``."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "--", ".venv", "venv"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    assert listed.stdout.split() == [], "run `git rm --cached .venv` and commit before landing"
