"""Vectorised row classification of Arrow columns, and reading single rows out of Arrow tables.

Converting millions of nested rows to Python objects is what makes naive loading slow, so the Parquet, JSONL and
Hugging Face dataset formats (:mod:`pipelines.data.formats`) classify whole record batches with pyarrow compute
and numpy instead: any number of prompt-source columns, each a conversation (``list<struct<role, content>>``) or
a prompt column of strings, a row using the first that is not null. The rules and their order are those of
:func:`pipelines.data.prompts.classify`; ``tests/data/test_readers.py`` checks both agree on every bad-row kind.
Columns of any other shape take the Python path.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.prompts import (ASSISTANT_ROLES, DEFAULT_FORMAT, FORMATS, ROLES, SYSTEM_ROLES, USER_ROLES,
                                    RowFormat)

# Checked in this order: the first that applies to a row is its reason (as in classify()).
ORDER = ("missing_conversations", "empty_conversations", "conversations_wrong_type", "unknown_role",
         "non_string_content", "no_assistant_turn", "empty_prompt")


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


TEXT = ("", "")   # the rule for a prompt column of plain strings (it has no message fields)


def message_fields(t: pa.DataType, key: str) -> Optional[tuple[str, str]]:
    """(role, content) field names of a list-of-structs column whose role and content fields are strings, else
    None. ``conversations``/``messages`` have fixed names; any other column is ShareGPT's when its structs have
    ``from`` or ``value``, else OpenAI's, as :func:`~pipelines.data.prompts.message_keys` decides per row."""
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
        return None
    st = t.value_type
    names = [st.field(i).name for i in range(st.num_fields)]
    if key in FORMATS:
        role_key, content_key = FORMATS[key]
    else:
        role_key, content_key = FORMATS["conversations" if ("from" in names or "value" in names) else "messages"]
    ok = (role_key in names and content_key in names and _is_string(st.field(role_key).type)
          and _is_string(st.field(content_key).type))
    return (role_key, content_key) if ok else None


def arrow_shape_ok(t: pa.DataType, key: str) -> bool:
    """Whether a column type is a list of structs whose role and content fields are strings."""
    return message_fields(t, key) is not None


def column_rule(t: pa.DataType, key: str, fmt: RowFormat = DEFAULT_FORMAT) -> Optional[tuple[str, str]]:
    """How the vectorised rules read column ``key`` of type ``t``: its (role, content) message fields,
    :data:`TEXT` for a prompt column of strings, or None when only the Python rules can classify it."""
    if key == fmt.prompt_key and key not in fmt.conversation_keys and _is_string(t):
        return TEXT
    return message_fields(t, key)


def vectorised_columns(schema: pa.Schema, fmt: RowFormat = DEFAULT_FORMAT) -> Optional[dict[str, tuple[str, str]]]:
    """{column: rule} for the prompt-source columns of ``fmt`` that ``schema`` holds, in precedence order, when
    every one of them can be classified vectorised; None when the Python rules must run (a template format, no
    such column at all, or a column of another shape). Any number of columns: each row uses the first that is
    not null (:func:`columns_reason_codes`)."""
    if fmt.template:
        return None
    keys = [k for k in fmt.columns() if k in schema.names]
    rules = {k: column_rule(schema.field(k).type, k, fmt) for k in keys}
    return rules if keys and all(r is not None for r in rules.values()) else None


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


def reason_codes(column: pa.Array, role_key: str, content_key: str) -> np.ndarray:
    """Per row of a conversation column: 0 when valid, else 1 + the index of its reason in :data:`ORDER`."""
    column = _combined(column)
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


def text_codes(column: pa.Array) -> np.ndarray:
    """Per row of a prompt column of strings: 0 when it has non-whitespace text, else ``empty_prompt``."""
    column = _combined(column)
    nonempty = (_np(pc.binary_length(column)) > 0) & ~_np(pc.utf8_is_space(column))
    return np.where(nonempty, 0, ORDER.index("empty_prompt") + 1).astype(np.uint8)


def columns_reason_codes(columns: dict[str, pa.Array], rules: Optional[dict[str, tuple[str, str]]] = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(reason codes, source) for a batch of prompt-source columns given in precedence order: a row uses the first
    column that is not null, as :func:`~pipelines.data.prompts.source_key` does, and ``source`` holds that
    column's position in ``columns`` (-1 where every one is null: ``missing_conversations``). ``rules`` come from
    :func:`vectorised_columns`; without them each column is a :data:`FORMATS` conversation column."""
    keys = list(columns)
    cols = [_combined(columns[k]) for k in keys]
    n = len(cols[0]) if cols else 0
    source = np.full(n, -1, dtype=np.int64)
    for i, col in enumerate(cols):
        source[(source < 0) & _np(col.is_valid())] = i
    codes = np.full(n, ORDER.index("missing_conversations") + 1, dtype=np.uint8)
    for i, (key, col) in enumerate(zip(keys, cols)):
        used = source == i
        if used.any():
            rule = rules[key] if rules is not None else FORMATS[key]
            codes = np.where(used, text_codes(col) if rule == TEXT else reason_codes(col, *rule), codes)
    return codes.astype(np.uint8), source


def _combined(column):
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def count_codes(codes: np.ndarray) -> Counter:
    """Skipped rows by reason."""
    counts = np.bincount(codes, minlength=len(ORDER) + 1)
    return Counter({reason: int(counts[i + 1]) for i, reason in enumerate(ORDER) if counts[i + 1]})


def take_rows(table: Any, local: np.ndarray, max_bytes: Optional[int]) -> list[tuple[Optional[str], Any]]:
    """(reason or None, row dict) for rows ``local`` of a pyarrow table or batch; a row whose data exceeds
    ``max_bytes`` becomes ``too_large`` without being converted to Python objects."""
    # indices built from a buffer: pa.array(numpy) would import pandas
    indices = pa.Array.from_buffers(pa.int64(), len(local), [None, pa.py_buffer(local.astype(np.int64).tobytes())])
    taken = table.take(indices)
    out: list[tuple[Optional[str], Any]] = []
    for i in range(taken.num_rows):
        row = taken.slice(i, 1)
        if max_bytes is not None and row.nbytes > max_bytes:  # nbytes counts only the bytes this row references
            out.append(("too_large", None))
        else:
            out.append((None, row.to_pylist()[0]))
    return out
