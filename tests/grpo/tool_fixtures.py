"""Tools and environments the tool tests name by import path: broken ones (--validate must refuse each) and a
working environment for the per-dataset routing test."""
from __future__ import annotations


def undocumented(x: int) -> int:
    return x


class NoReset:
    """An environment without ``reset``."""

    def step(self, move: str) -> str:
        """Make a move.

        Args:
            move: The move.
        """
        return move


class Counter:
    """An environment counting the calls of its one tool across a rollout."""

    def reset(self, **row) -> str:
        self.count = 0
        return " (You may call `bump`.)"

    def bump(self) -> str:
        """Add one to the counter.

        Returns:
            The counter after the call.
        """
        self.count += 1
        return str(self.count)
