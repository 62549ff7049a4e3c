"""Vectorised row classification for Parquet conversation columns (``list<struct<role, content>>``).

Converting millions of nested rows to Python objects is what makes naive loading slow, so the Parquet scan
classifies whole record batches with pyarrow compute and numpy instead. The rules and their order are those
of :func:`pipelines.grpo.data_prompts.classify`; ``tests/grpo/test_data_readers.py`` checks both agree on
every bad-row kind. Columns of any other shape take the Python path.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.grpo.data_prompts import ASSISTANT_ROLES, FORMATS, ROLES, SYSTEM_ROLES

# Checked in this order: the first that applies to a row is its reason (as in classify()).
ORDER = ("missing_conversations", "empty_conversations", "conversations_wrong_type", "unknown_role",
         "non_string_content", "no_assistant_turn", "empty_prompt")


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def arrow_shape_ok(t: pa.DataType, key: str) -> bool:
    """Whether a column type is a list of structs whose role and content fields are strings."""
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
        return False
    role_key, content_key = FORMATS[key]
    st = t.value_type
    names = [st.field(i).name for i in range(st.num_fields)]
    return (role_key in names and content_key in names and _is_string(st.field(role_key).type)
            and _is_string(st.field(content_key).type))


def _np(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _per_row(parents: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """For each row, whether any of its messages has ``mask`` set."""
    return np.bincount(parents[mask], minlength=n)[:n] > 0


def classify_arrow(column: pa.Array, key: str) -> tuple[Counter, np.ndarray]:
    """(skipped rows by reason, boolean mask of valid rows) for one batch of a conversation column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    role_key, content_key = FORMATS[key]
    n = len(column)
    flat = column.flatten()
    parents = _np(pc.list_parent_indices(column)).astype(np.int64)
    elem_null = _np(flat.is_null())
    roles = pc.utf8_lower(pc.utf8_trim_whitespace(pc.struct_field(flat, role_key)))
    known = _np(pc.is_in(roles, value_set=pa.array(sorted(ROLES))).fill_null(False))
    is_system = _np(pc.is_in(roles, value_set=pa.array(sorted(SYSTEM_ROLES))).fill_null(False))
    is_assistant = _np(pc.is_in(roles, value_set=pa.array(sorted(ASSISTANT_ROLES))).fill_null(False))
    content = pc.struct_field(flat, content_key)
    content_null = _np(content.is_null())
    nonempty = _np(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(content)), 0).fill_null(False))

    # A cut is an assistant turn with non-empty non-system content somewhere before it in the same row.
    speaks = (nonempty & ~is_system).astype(np.int64)
    before = np.concatenate(([0], np.cumsum(speaks)))
    row_first = np.searchsorted(parents, parents, side="left")
    idx = np.arange(len(parents))
    cut = is_assistant & (before[idx] - before[row_first] > 0)

    conditions = [
        _np(column.is_null()),
        _np(pc.list_value_length(column).fill_null(0)) == 0,
        _per_row(parents, elem_null, n),
        _per_row(parents, ~known, n),
        _per_row(parents, content_null, n),
        ~_per_row(parents, is_assistant, n),
        ~_per_row(parents, cut, n),
    ]
    codes = np.select(conditions, list(range(1, len(ORDER) + 1)), default=0)
    counts = np.bincount(codes, minlength=len(ORDER) + 1)
    skipped = Counter({reason: int(counts[i + 1]) for i, reason in enumerate(ORDER) if counts[i + 1]})
    return skipped, codes == 0
