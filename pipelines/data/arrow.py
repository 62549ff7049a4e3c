"""Vectorised row classification for Parquet conversation columns (``list<struct<role, content>>``).

Converting millions of nested rows to Python objects is what makes naive loading slow, so the Parquet scan
classifies whole record batches with pyarrow compute and numpy instead. The rules and their order are those
of :func:`pipelines.data.prompts.classify`; ``tests/data/test_readers.py`` checks both agree on
every bad-row kind. Columns of any other shape take the Python path.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.prompts import ASSISTANT_ROLES, FORMATS, ROLES, SYSTEM_ROLES, USER_ROLES

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


def _bits(buffer: pa.Buffer, offset: int, length: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(buffer, dtype=np.uint8), bitorder="little")[offset: offset + length] == 1


def _np(arr: pa.Array) -> np.ndarray:
    """A boolean or integer array as numpy, nulls read as False/0, straight from its buffers: pyarrow's
    ``to_numpy``, ``fill_null`` with a Python value and ``pa.array`` on Python objects all import pandas (about
    50 MB and a second of start-up), which the data layer otherwise never needs."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    validity, data = arr.buffers()[0], arr.buffers()[1]
    if pa.types.is_boolean(arr.type):
        values = _bits(data, arr.offset, len(arr))
    else:
        values = np.frombuffer(data, dtype=np.dtype(f"int{arr.type.bit_width}"))[arr.offset: arr.offset + len(arr)]
    if arr.null_count:
        values = np.where(_bits(validity, arr.offset, len(arr)), values, 0).astype(values.dtype)
    return values


def _string_array(values: list[str]) -> pa.Array:
    """A pyarrow string array built from raw buffers (``pa.array`` on Python objects imports pandas)."""
    data = [v.encode() for v in values]
    offsets = np.cumsum([0] + [len(d) for d in data]).astype(np.int32)
    return pa.StringArray.from_buffers(len(data), pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(data)))


ROLE_SET, SYSTEM_SET, ASSISTANT_SET, USER_SET = (sorted(ROLES), sorted(SYSTEM_ROLES), sorted(ASSISTANT_ROLES),
                                                 sorted(USER_ROLES))


def _per_row(parents: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """For each row, whether any of its messages has ``mask`` set."""
    return np.bincount(parents[mask], minlength=n)[:n] > 0


def reason_codes(column: pa.Array, key: str) -> np.ndarray:
    """Per row: 0 when valid, else 1 + the index of its reason in :data:`ORDER`."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    role_key, content_key = FORMATS[key]
    n = len(column)
    flat = column.flatten()
    parents = _np(pc.list_parent_indices(column)).astype(np.int64)
    elem_null = _np(flat.is_null())
    roles = pc.utf8_lower(pc.utf8_trim_whitespace(pc.struct_field(flat, role_key)))
    known = _np(pc.is_in(roles, value_set=_string_array(ROLE_SET)))
    is_system = _np(pc.is_in(roles, value_set=_string_array(SYSTEM_SET)))
    is_assistant = _np(pc.is_in(roles, value_set=_string_array(ASSISTANT_SET)))
    is_user = _np(pc.is_in(roles, value_set=_string_array(USER_SET)))
    content = pc.struct_field(flat, content_key)
    content_null = _np(content.is_null())
    # non-empty after str.strip(): has bytes and is not all whitespace (no trimmed copy of the text is made)
    nonempty = (_np(pc.binary_length(content)) > 0) & ~_np(pc.utf8_is_space(content))

    # A cut is an assistant turn with non-empty non-system content somewhere before it in the same row.
    speaks = (nonempty & ~is_system).astype(np.int64)
    before = np.concatenate(([0], np.cumsum(speaks)))
    run_starts = np.flatnonzero(np.diff(parents, prepend=-1))  # parents are sorted: one run per row
    row_first = np.repeat(run_starts, np.diff(np.append(run_starts, len(parents))))
    cut = is_assistant & (before[:-1] - before[row_first] > 0)
    # A conversation whose last message is the user's, after some content, is a prompt as it stands.
    # (flatten() skips null lists, whose length reads as 0 here, so cumsum - 1 is each row's last message)
    lengths = _np(pc.list_value_length(column)).astype(np.int64)
    last = lengths > 0
    ends = np.zeros(n, dtype=bool)
    ends[last] = is_user[(np.cumsum(lengths) - 1)[last]]
    has_content = _per_row(parents, speaks.astype(bool), n)

    conditions = [
        _np(column.is_null()),
        _np(pc.list_value_length(column)) == 0,
        _per_row(parents, elem_null, n),
        _per_row(parents, ~known, n),
        _per_row(parents, content_null, n),
        ~_per_row(parents, is_assistant, n) & ~ends,
        ~_per_row(parents, cut, n) & ~(ends & has_content),
    ]
    return np.select(conditions, list(range(1, len(ORDER) + 1)), default=0).astype(np.uint8)


def columns_reason_codes(columns: dict[str, pa.Array]) -> tuple[np.ndarray, np.ndarray]:
    """(reason codes, whether the row uses the second column) for a batch holding ``conversations`` and/or
    ``messages`` (each of a usable shape): a row uses the first of them that is not null, as
    :func:`~pipelines.data.prompts.conversation_key` does."""
    keys = [k for k in FORMATS if k in columns]
    codes = reason_codes(columns[keys[0]], keys[0])
    use_second = np.zeros(len(codes), dtype=bool)
    if len(keys) == 2:
        first, second = (_combined(columns[k]) for k in keys)
        use_second = _np(first.is_null()) & _np(second.is_valid())
        if use_second.any():
            codes = np.where(use_second, reason_codes(second, keys[1]), codes)
    return codes, use_second


def _combined(column):
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def count_codes(codes: np.ndarray) -> Counter:
    """Skipped rows by reason."""
    counts = np.bincount(codes, minlength=len(ORDER) + 1)
    return Counter({reason: int(counts[i + 1]) for i, reason in enumerate(ORDER) if counts[i + 1]})
