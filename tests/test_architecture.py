"""The layout's rules, read from the source with ``ast`` (docs/architecture.md explains them):

- no import cycles among the project's modules, lazy (in-function) imports included;
- the shared layers (``common``, ``data``, ``rewards``) import no node package, except the one documented plugin
  seam: the reward catalog imports the user-editable files by name;
- no module imports another module's private names, and nothing patches ``sys.path``;
- the GRPO node package holds no data or judge modules;
- the node packages are derived from the node table (``pipelines.registry.NODE_FACTORIES``), every package is
  either a shared layer or a node's, and no node imports the runner layer (the modules directly in
  ``pipelines/``: runner, planning, validation, registry, launch, worker, ...);
- a node package imports no package of a node built on it (``grpo`` never imports ``grpo.hpo``).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = ("pipelines.common", "pipelines.data", "pipelines.rewards")


def node_packages() -> tuple[str, ...]:
    """Each registered node's package: the package of the module its ``run`` names (``pipelines.grpo.hpo.node:run``
    -> ``pipelines.grpo.hpo``), read from the node table so a new node is covered without editing this test."""
    from pipelines.registry import NODE_FACTORIES

    return tuple(sorted({factory().run.split(":")[0].rsplit(".", 1)[0] for factory in NODE_FACTORIES.values()}))


def runner_layer() -> tuple[str, ...]:
    """The runner layer: the modules directly in ``pipelines/`` (runner, planning, registry, launch, ...)."""
    return tuple(sorted(f"pipelines.{p.stem}" for p in (REPO / "pipelines").glob("*.py") if p.stem != "__init__"))


def in_package(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


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
            bad += [f"{name} -> {t}" for t in targets if in_package(t, node_packages() + runner_layer())]
    assert bad == []


def test_data_and_rewards_import_one_way():
    """The data layer reads the reward layer's config sections only (a dataset's ``reward_funcs`` entries); what
    it needs of the reward catalog (the columns a reward needs) the node hands it in ``DataSpec``. The reward
    layer imports nothing of the data layer, annotations included: it reads a dataset through the
    ``RewardedDataset`` protocol of its own config module."""
    bad = []
    for name, targets in graph().items():
        if in_package(name, ("pipelines.data",)):
            bad += [f"{name} -> {t}" for t in targets if in_package(t, ("pipelines.rewards",))
                    and t != "pipelines.rewards.config"]
        if in_package(name, ("pipelines.rewards",)):
            bad += [f"{name} -> {t}" for t in targets if in_package(t, ("pipelines.data",))]
    assert bad == []


def test_node_packages_come_from_the_node_table():
    nodes = node_packages()
    assert {"pipelines.grpo", "pipelines.rollout", "pipelines.grpo.hpo"} <= set(nodes)
    assert "pipelines.runner" in runner_layer() and "pipelines.launch" in runner_layer()
    # every package under pipelines/ is a shared layer or (inside) a node's package: none is left unchecked
    packages = {module_name(p.parent / "__init__.py") for p in (REPO / "pipelines").rglob("__init__.py")}
    loose = [p for p in packages - {"pipelines"} if not in_package(p, SHARED + nodes)]
    assert loose == []


def runner_imports(edges: dict[str, set[str]], nodes: tuple[str, ...], runner: tuple[str, ...]) -> list[str]:
    return [f"{name} -> {t}" for name, targets in edges.items() if in_package(name, nodes)
            for t in sorted(targets) if in_package(t, runner)]


def test_nodes_import_no_runner_module():
    """A node gets what it needs from ``common`` (rank and device facts, the node contract), never from the
    runner layer that launches it."""
    assert runner_imports(graph(), node_packages(), runner_layer()) == []


def test_the_checker_sees_a_node_importing_the_runner():
    edges = {"pipelines.grpo.node": {"pipelines.launch", "pipelines.common.devices"},
             "pipelines.grpox.node": {"pipelines.launch"}, "pipelines.runner": {"pipelines.launch"}}
    assert runner_imports(edges, ("pipelines.grpo",), ("pipelines.launch", "pipelines.runner")) == [
        "pipelines.grpo.node -> pipelines.launch"]


def test_a_node_imports_no_node_built_on_it():
    """``grpo_hpo`` builds on ``grpo`` (its package sits inside grpo's); grpo's own modules never import it: the
    HPO node's hooks (its preflight included) live in its own package."""
    nodes = node_packages()
    bad = []
    for name, targets in graph().items():
        owner = max((p for p in nodes if in_package(name, (p,))), key=len, default=None)
        if owner is None:
            continue
        bad += [f"{name} -> {t}" for t in targets
                if any(in_package(t, (p,)) and p != owner and in_package(p, (owner,)) for p in nodes)]
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


def test_one_compatibility_module():
    """Everything Augmentoolkit-specific is one module of the GRPO node; the shared layers keep only the notice
    type (``common/notices.py``) and never translate Augmentoolkit's config shape themselves."""
    assert sorted(str(p.relative_to(REPO)) for p in (REPO / "pipelines").rglob("*compat*.py")) == [
        "pipelines/grpo/compat.py"]
    keys = ("no_flatten", "reward_combination_function", "reward_scaling_function", "compat_mode", "grpo-rl")
    shared = [p for layer in ("common", "data", "rewards") for p in (REPO / "pipelines" / layer).rglob("*.py")]
    assert [f"{p.relative_to(REPO)}: {k}" for p in shared for k in keys
            if k in p.read_text(encoding="utf-8")] == []
