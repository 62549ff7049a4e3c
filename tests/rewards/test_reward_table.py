"""Issue 21: the README's built-in rewards table is generated from the reward records
(pipelines/rewards/table.py, cli_utils/reward_table.py); tests/test_docs.py checks the README's copy."""
from __future__ import annotations

from typing import Literal

import pytest

from cli_utils import reward_table
from pipelines.rewards import catalog
from pipelines.rewards.registry import RegisteredReward
from pipelines.rewards.table import END, START, arguments, builtin_reward_table, splice, summary, table_in

BUILTINS = ("answer_match", "code_tests", "cot_format", "countdown_equation", "generic_llm_reward", "keyword",
            "length_target", "llm_judge", "regex_match", "repetition_penalty", "think_answer_format")


def piped(choice: Literal["a", "b"], size: int, flag: bool = False, **kwargs):
    """Scores ``a|b`` choices,
    on two lines.

    Not this paragraph."""
    return lambda completions, **kw: [0.0] * len(completions)


def test_the_table_has_one_row_per_builtin_reward_and_nothing_else():
    rows = builtin_reward_table().splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [f"| `{name}`" for name in BUILTINS]
    table = builtin_reward_table()
    for other in ("think_format_reward", "accuracy_reward", "example_mentions_topic"):   # trl and plugin ones
        assert f"`{other}`" not in table
    answer_match = next(r for r in rows if r.startswith("| `answer_match`"))
    assert "| factory | `answer` |" in answer_match and "`mode: exact\\|normalized\\|numeric`" in answer_match
    countdown = next(r for r in rows if r.startswith("| `countdown_equation`"))
    assert "| `target`, `nums` |" in countdown and "The Countdown task" not in countdown   # first paragraph only


def test_a_row_reads_the_docstring_and_the_signature():
    record = RegisteredReward(piped, ("piped",))
    assert summary(record) == "Scores `a\\|b` choices, on two lines."
    assert arguments(record) == "**`choice: a\\|b`**, **`size`**, `flag`"
    assert catalog.reward_kind(record) == "factory"


def test_splice_replaces_only_the_marked_block():
    text = f"intro\n{START}\n| old |\n{END}\nafter\n"
    assert splice(text, "| new |") == f"intro\n{START}\n| new |\n{END}\nafter\n"
    assert table_in(splice(text, "| new |")) == "| new |"
    for bad in ("no markers\n", f"{START}\n{END}\n{START}\n{END}\n", f"{END}\n{START}\n"):
        with pytest.raises(ValueError, match="expected one"):
            splice(bad, "| new |")


def test_the_command_writes_the_table_into_a_file(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{START}\n| stale |\n{END}\n\nrest\n", encoding="utf-8")
    assert reward_table.main(["--write", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == f"# Title\n\n{START}\n{builtin_reward_table()}\n{END}\n\nrest\n"
    assert "updated" in capsys.readouterr().out
    assert reward_table.main(["--write", str(readme)]) == 0
    assert "already up to date" in capsys.readouterr().out
    readme.write_text("no markers\n", encoding="utf-8")
    assert reward_table.main(["--write", str(readme)]) == 2
    assert readme.read_text(encoding="utf-8") == "no markers\n"
    assert reward_table.main([]) == 0 and capsys.readouterr().out == builtin_reward_table() + "\n"


def test_a_file_without_markers_is_named_and_left_alone(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n", encoding="utf-8")
    assert reward_table.main(["--write", str(readme)]) == 2
    assert f"{readme}: expected one {START} ... {END} block" in capsys.readouterr().err
    assert readme.read_text(encoding="utf-8") == "no markers\n" and list(tmp_path.iterdir()) == [readme]
