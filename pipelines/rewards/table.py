"""The README's table of built-in rewards, generated from the reward records.

Each row comes from one :class:`~pipelines.rewards.registry.RegisteredReward` of origin ``builtin``: its name
and aliases, its form, the row columns it needs with default arguments, its arguments (from the signature) and
the first paragraph of its docstring. The README holds the table between :data:`START` and :data:`END`;
``tests/test_docs.py`` checks it is up to date and ``.venv/bin/python -m cli_utils.reward_table --write
README.md`` regenerates it.
"""
from __future__ import annotations

import inspect
import re
import typing

from pipelines.rewards import catalog
from pipelines.rewards.registry import RegisteredReward

START = "<!-- builtin-rewards:start -->"
END = "<!-- builtin-rewards:end -->"
_BLOCK = re.compile(rf"^{re.escape(START)}\n(.*?)\n?^{re.escape(END)}$", re.S | re.M)
HEADER = ("| name | form | needs columns | arguments (**required**) | what it scores |\n"
          "|---|---|---|---|---|")


def builtin_records() -> list[RegisteredReward]:
    """The built-in rewards' records, one per reward, by name."""
    registry = catalog.rewards()
    records = {registry.get(n).name: registry.get(n) for n in registry.names()}   # aliases share a record
    return [records[n] for n in sorted(records) if records[n].origin == "builtin"]


def _cell(text: str) -> str:
    """Markdown table cell text: rST ``code`` as `code`, one line, pipes escaped."""
    return " ".join(text.replace("``", "`").split()).replace("|", "\\|")


def summary(record: RegisteredReward) -> str:
    """The first paragraph of the object's docstring, on one line."""
    doc = inspect.getdoc(record.obj) or ""
    return _cell(doc.split("\n\n", 1)[0])


def _argument(param: inspect.Parameter) -> str:
    text = f"`{param.name}`"
    if typing.get_origin(param.annotation) is typing.Literal:
        text = f"`{param.name}: {'|'.join(str(a) for a in typing.get_args(param.annotation))}`"
    return f"**{text}**" if param.default is inspect.Parameter.empty else text


def arguments(record: RegisteredReward) -> str:
    """The entry keys the reward takes, required ones first (in bold)."""
    sig = record.signature
    if sig is None:
        return ""
    params = [p for p in sig.parameters.values() if p.name not in catalog.TRL_PASSED
              and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
    params.sort(key=lambda p: p.default is not inspect.Parameter.empty)
    return _cell(", ".join(_argument(p) for p in params)) or "(none)"


def _row(record: RegisteredReward) -> str:
    names = f"`{record.name}`" + "".join(f" (alias `{a}`)" for a in record.aliases)
    columns = ", ".join(f"`{c}`" for c in record.needed_columns({})) or "-"
    form = catalog.reward_kind(record)
    return f"| {names} | {form} | {columns} | {arguments(record)} | {summary(record)} |"


def builtin_reward_table() -> str:
    """The Markdown table of the built-in rewards (no trailing newline)."""
    return "\n".join([HEADER, *(_row(r) for r in builtin_records())])


def _block(text: str) -> re.Match[str]:
    found = list(_BLOCK.finditer(text))
    if len(found) != 1:
        raise ValueError(f"expected one {START} ... {END} block, each marker on its own line; found {len(found)}")
    return found[0]


def table_in(text: str) -> str:
    """The table between the markers of ``text``. Raises ValueError unless there is exactly one such block."""
    return _block(text).group(1)


def splice(text: str, table: str) -> str:
    """``text`` with the lines between the :data:`START` and :data:`END` markers replaced by ``table``.
    Raises ValueError unless there is exactly one such block."""
    match = _block(text)
    return f"{text[:match.start()]}{START}\n{table}\n{END}{text[match.end():]}"
