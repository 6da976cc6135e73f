"""The vectorised JSONL path: decide blocks of lines column-wise, leave the rest to Validator.

A block of whole lines is parsed by pyarrow's JSON reader against an explicit schema and
checked with pyarrow.compute. A line is *accepted here* only when the exact validator
(validate.py) would surely accept it with the same columns: a one-line object of the usual
shape (string prompt or messages with known roles, non-blank text, top-level sampling
parameters that validate). Every other line - malformed, oddly typed, blank-looking, nested
"sampling" or "stop", content given as a list of parts, too long, invalid UTF-8 - goes to
the exact per-record validator, so
rejects keep their line numbers and reasons and the staged rows equal the exact path's.
tests/ingest/test_fast_path.py runs both paths and compares the tables.

Memory is bounded by one block (BLOCK_BYTES, at most batch_rows lines) plus max_line_bytes.
prompt_sha256 is computed by DuckDB when the rows are published (sql/ingest/insert_prompts.sql).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from blend.ingest.lines import skip_bom, skip_rest_of_line
from blend.ingest.records import RawRecord, line_too_long
from blend.ingest.validate import ROLES, Validator

# Bytes read per block; a block holds whole lines only (at most batch_rows of them).
BLOCK_BYTES = 8 << 20
# A failing parse of more lines than this is split in halves; of fewer, split at the line the
# error names. A single line that fails goes to the validator.
_LEAF_LINES = 64
# pyarrow parses a block in chunks of about this size on its threads (a quarter of a block).
_PARSE_CHUNK_BYTES = 1 << 20
# orjson refuses nesting deeper than 1024; a line with this many brackets goes to the validator.
_MAX_BRACKETS = 1000
# Lines shorter than this cannot hold _MAX_BRACKETS brackets: not counted.
_BRACKET_CHECK_BYTES = 2 * _MAX_BRACKETS

_OPEN_BRACE, _CLOSE_BRACE, _NEWLINE, _CR = ord("{"), ord("}"), ord("\n"), ord("\r")

# A character str.isspace() calls non-space: a string holding one is not blank for the
# validator (str.strip / str.isspace). SPACES is Python's table (a test compares them).
SPACES = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
NON_SPACE = "[^" + "".join(f"\\x{{{ord(c):x}}}" for c in SPACES) + "]"
# Characters orjson escapes in a string; the others it writes as they are.
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
_SHORT_ESCAPES = (
    ("\\", "\\\\"),  # the backslash first: the escapes below add backslashes
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
)
_OTHER_CONTROLS = [chr(c) for c in range(0x20) if chr(c) not in "\n\r\t\b\f"]
_OTHER_CONTROL = r"[\x00-\x07\x0b\x0e-\x1f]"

# Top-level sampling parameters read here, with the arrow type their JSON values must have.
_SAMPLING_TYPES = {
    "max_tokens": pa.int64(),
    "temperature": pa.float64(),
    "top_p": pa.float64(),
    "top_k": pa.int64(),
    "seed": pa.int64(),
    "presence_penalty": pa.float64(),
    "frequency_penalty": pa.float64(),
    "repetition_penalty": pa.float64(),
    "min_tokens": pa.int64(),
    "n": pa.int64(),
}
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
# "stop" and a nested "sampling" object are only looked at to send their lines to the validator.
_PRESENCE_ONLY = {
    "stop": pa.list_(pa.string()),
    "sampling": pa.struct([(name, kind) for name, kind in _SAMPLING_TYPES.items()]),
}
_ERROR_ROW = re.compile(r" in row (\d+)$")
_ID_ERROR = re.compile(r"Column\(/id\) changed from (string|number)")
# Message content given as a list of parts (parsed as a string column here): such lines go to
# the validator. Looked for only in a range whose parse failed on it, so files without parts
# pay nothing. A key inside a JSON string has escaped quotes and does not match.
_PARTS_ERROR = re.compile(r"Column\(/messages/\[\]/content\) changed from string to array")
_PARTS_CONTENT = re.compile(rb'"content"\s*:\s*\[')
# Literals Arrow's JSON reader takes as numbers (NaN, Inf, Infinity, with a sign) where JSON
# and the exact path refuse them: a line holding the text anywhere goes to the validator.
_NON_FINITE = re.compile(rb"NaN|Inf")

# The staged columns this path produces (the staging table's, less prompt_sha256).
FAST_SCHEMA = pa.schema(
    [
        ("line_no", pa.int64()),
        ("request_id", pa.string()),
        ("prompt", pa.string()),
        ("messages_json", pa.string()),
        ("sampling_json", pa.string()),
        ("max_tokens", pa.int32()),
        ("raw_offset", pa.int64()),
        ("raw_length", pa.int64()),
    ]
)

Index = npt.NDArray[np.int64]


class Block(NamedTuple):
    """Whole lines of a file: each ends in a newline except perhaps the file's last."""

    first_line: int  # 1-based line number of the first line
    offset: int  # byte offset of the first line in the file
    data: bytes


@dataclass(slots=True)
class Decided:
    """One block's outcome: rows accepted here and lines left to the exact validator."""

    accepted: pa.Table  # FAST_SCHEMA
    undecided: list[RawRecord]  # non-blank lines, in file order
    last_line: int  # line number of the block's last line


@dataclass(slots=True)
class _Schema:
    """The parse schema of one file; `id` switches type when the file's ids are numbers."""

    id_type: pa.DataType = field(default_factory=pa.string)

    def arrow(self) -> pa.Schema:
        return pa.schema(
            [
                ("custom_id", pa.string()),
                ("id", self.id_type),
                ("prompt", pa.string()),
                ("messages", pa.list_(_MESSAGE)),
                *_SAMPLING_TYPES.items(),
                *_PRESENCE_ONLY.items(),
            ]
        )


def decide_file(
    path: Path, max_line_bytes: int, batch_rows: int, validator: Validator
) -> Iterator[Decided]:
    """The blocks of a JSON Lines file, decided, in file order."""
    schema = _Schema()
    with path.open("rb") as f:
        for piece in read_blocks(f, max_line_bytes, max(BLOCK_BYTES, max_line_bytes + 1)):
            if isinstance(piece, RawRecord):  # an oversize line met across block boundaries
                yield Decided(FAST_SCHEMA.empty_table(), [piece], piece.line_no)
                continue
            for part in _split_lines(piece, batch_rows):
                yield _decide_block(part, max_line_bytes, validator, schema)


def read_blocks(f: BinaryIO, max_line_bytes: int, block_bytes: int) -> Iterator[Block | RawRecord]:
    """Blocks of whole lines after any BOM; a line longer than max_line_bytes that does not fit
    a block comes back as its reject record, never read whole (like bounded_lines)."""
    skip_bom(f)
    offset, line_no, pending = f.tell(), 1, b""
    while True:
        chunk = f.read(block_bytes)
        data = pending + chunk if pending else chunk
        if not chunk:
            if data:
                yield Block(line_no, offset, data)
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) > max_line_bytes:
                rest, terminator = skip_rest_of_line(f)
                n_bytes = len(data) + rest
                text = data[: max_line_bytes + 1]
                problem = line_too_long(n_bytes, max_line_bytes)
                yield RawRecord(line_no, b"", offset, n_bytes, text, problem)
                offset, line_no, pending = offset + n_bytes + terminator, line_no + 1, b""
            else:
                pending = data
            continue
        yield Block(line_no, offset, data[:cut])
        line_no += data.count(b"\n", 0, cut)
        offset += cut
        pending = data[cut:]


def _split_lines(block: Block, max_lines: int) -> Iterator[Block]:
    """`block` in parts of at most max_lines lines."""
    data = block.data
    if data.count(b"\n") <= max_lines:
        yield block
        return
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == _NEWLINE)[max_lines - 1 :: max_lines]
    start, first_line = 0, block.first_line
    for end in [*(int(e) + 1 for e in ends), len(data)]:
        if end > start:
            yield Block(first_line, block.offset + start, data[start:end])
            first_line += max_lines
            start = end


# --- one block -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lines:
    """Where the lines of a block lie: [starts, ends) without the newline; content_ends
    drops one trailing carriage return as well."""

    starts: Index
    ends: Index
    content_ends: Index


def _line_bounds(data: bytes) -> _Lines:
    arr = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(arr == _NEWLINE)
    ends = newlines if data.endswith(b"\n") else np.append(newlines, len(data))
    starts = np.empty(len(ends), np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    last = np.maximum(ends - 1, 0)
    content_ends = ends - ((ends > starts) & (arr[last] == _CR))
    return _Lines(starts, ends.astype(np.int64), content_ends.astype(np.int64))


def _decide_block(
    block: Block, max_line_bytes: int, validator: Validator, schema: _Schema
) -> Decided:
    data = block.data
    lines = _line_bounds(data)
    candidates = _candidate_lines(data, lines, max_line_bytes)
    parsed = _parse(data, lines, candidates, schema)
    index = np.concatenate([idx for idx, _ in parsed]) if parsed else np.empty(0, np.int64)
    tables = [table for _, table in parsed]
    accepted = FAST_SCHEMA.empty_table()
    decided = np.zeros(len(lines.starts), np.bool_)
    if tables:
        table = pa.concat_tables(tables)
        sampling = _sampling(table, validator)
        keep = _acceptable(table, sampling.ok)
        accepted = _accepted_rows(table, keep, sampling, index, lines, block)
        decided[index[keep.to_numpy(zero_copy_only=False)]] = True
    undecided = _undecided(block, lines, np.flatnonzero(~decided), max_line_bytes)
    last_line = block.first_line + len(lines.starts) - 1
    return Decided(accepted, undecided, last_line)


def _candidate_lines(data: bytes, lines: _Lines, max_line_bytes: int) -> Index:
    """Lines that may be decided here: "{...}" on one line, within the length limit."""
    arr = np.frombuffer(data, np.uint8)
    size = lines.content_ends - lines.starts
    first = arr[np.minimum(lines.starts, len(arr) - 1)]
    last = arr[np.maximum(lines.content_ends - 1, 0)]
    ok = (size >= 2) & (first == _OPEN_BRACE) & (last == _CLOSE_BRACE)
    ok &= lines.ends - lines.starts <= max_line_bytes
    candidates = np.flatnonzero(ok)
    long_lines = candidates[size[candidates] >= _BRACKET_CHECK_BYTES]
    if len(long_lines):
        deep = [
            i
            for i in long_lines
            if data.count(b"[", lines.starts[i], lines.ends[i])
            + data.count(b"{", lines.starts[i], lines.ends[i])
            >= _MAX_BRACKETS
        ]
        candidates = np.setdiff1d(candidates, np.asarray(deep, np.int64))
    return _without_non_finite(data, lines, candidates)


def _without_non_finite(data: bytes, lines: _Lines, index: Index) -> Index:
    """The lines of `index` without the text NaN or Inf (in a string or not: conservative)."""
    hits = np.fromiter((m.start() for m in _NON_FINITE.finditer(data)), np.int64)
    if len(hits) == 0:
        return index
    with_text = np.searchsorted(lines.starts, hits, side="right") - 1
    return index[~np.isin(index, with_text)]


def _parse(
    data: bytes, lines: _Lines, index: Index, schema: _Schema
) -> list[tuple[Index, pa.Table]]:
    """Parse the lines `index`: (lines, table) pieces; a failing range is split until its
    parts parse, lines that fail alone are left out (to the validator)."""
    if len(index) == 0:
        return []
    payload = _payload(data, lines, index)
    failure: Exception | None = None
    for attempt in range(2):
        try:
            table = _read_json(payload, schema)
        except (pa.ArrowInvalid, UnicodeDecodeError) as error:
            failure = error
            if attempt == 0 and _retype_id(schema, error):
                continue
            break
        if table.num_rows == len(index):  # one object per line, as the line checks ensured
            return [(index, table)]
        break
    if failure is not None and _PARTS_ERROR.search(str(failure)):
        plain = _without_content_parts(data, lines, index)
        if len(plain) < len(index):  # a file of content parts costs one failed parse a block
            return _parse(data, lines, plain, schema)
    # Small ranges step over the line the error names; others (and errors naming no line) are
    # halved, so k bad lines among n cost O(n log n) parsing, not O(k n).
    row = _error_row(failure, payload) if len(index) <= _LEAF_LINES else None
    if row is not None and row < len(index):
        before, after = index[:row], index[row + 1 :]
    elif len(index) > 1:
        before, after = index[: len(index) // 2], index[len(index) // 2 :]
    else:
        return []
    return _parse(data, lines, before, schema) + _parse(data, lines, after, schema)


def _without_content_parts(data: bytes, lines: _Lines, index: Index) -> Index:
    """The lines of `index` in which no "content" key holds a list (of parts)."""
    first, last = int(index[0]), int(index[-1])
    hits = np.fromiter(
        (m.start() for m in _PARTS_CONTENT.finditer(data, lines.starts[first], lines.ends[last])),
        np.int64,
    )
    with_parts = np.searchsorted(lines.starts, hits, side="right") - 1
    return index[~np.isin(index, with_parts)]


def _read_json(payload: bytes, schema: _Schema) -> pa.Table:
    """Parse lines of JSON objects with the file's schema; ids come back as strings."""
    if not payload.isascii():
        payload.decode("utf-8")  # pyarrow does not check all of it; orjson does
    table = pj.read_json(
        pa.py_buffer(payload),
        read_options=pj.ReadOptions(block_size=max(_PARSE_CHUNK_BYTES, len(payload) // 4 + 1)),
        parse_options=pj.ParseOptions(
            explicit_schema=schema.arrow(), unexpected_field_behavior="ignore"
        ),
    )
    if table.schema.field("id").type != pa.string():  # integer ids read as their digits
        column = table.schema.get_field_index("id")
        table = table.set_column(column, "id", pc.cast(table["id"], pa.string()))
    return table


def _error_row(error: Exception | None, payload: bytes) -> int | None:
    """The 0-based line of `payload` a parse error names ("... in row 12"), if any."""
    if isinstance(error, UnicodeDecodeError):
        return payload.count(b"\n", 0, error.start)
    match = _ERROR_ROW.search(str(error)) if error is not None else None
    return int(match.group(1)) if match else None


def _retype_id(schema: _Schema, error: Exception) -> bool:
    """Switch the id column between string and integer when the error says it changed."""
    match = _ID_ERROR.search(str(error))
    if match is None:
        return False
    schema.id_type = pa.int64() if match.group(1) == "string" else pa.string()
    return True


def _payload(data: bytes, lines: _Lines, index: Index) -> bytes:
    """The bytes of the lines `index`, one per line."""
    first, last = int(index[0]), int(index[-1])
    if last - first + 1 == len(index):  # contiguous: one slice
        return data[lines.starts[first] : lines.ends[last]]
    return b"\n".join(data[lines.starts[i] : lines.ends[i]] for i in index)


def _acceptable(table: pa.Table, sampling_ok: pa.BooleanArray) -> pa.BooleanArray:
    """Rows the exact validator would accept, by checks that imply it."""
    request_id = _request_ids(table)
    id_ok = pc.or_kleene(request_id.is_null(), _has_non_space(request_id))
    prompt, messages = table["prompt"], table["messages"]
    prompt_ok = pc.and_kleene(messages.is_null(), _has_non_space(prompt))
    chat_ok = pc.and_kleene(prompt.is_null(), _valid_messages(messages))
    plain_sampling = pc.and_(table["stop"].is_null(), table["sampling"].is_null())
    keep = pc.and_kleene(pc.and_kleene(id_ok, pc.or_kleene(prompt_ok, chat_ok)), plain_sampling)
    keep = pc.and_kleene(keep, sampling_ok)
    return pc.fill_null(keep, False).combine_chunks()


def _request_ids(table: pa.Table) -> pa.ChunkedArray:
    """custom_id, else id (already a string, see _parse)."""
    return pc.coalesce(table["custom_id"], table["id"])


def _has_non_space(strings: Any) -> Any:
    return pc.fill_null(pc.match_substring_regex(strings, NON_SPACE), False)


def _valid_messages(messages: pa.ChunkedArray) -> pa.BooleanArray:
    """Non-empty lists of objects with a known role and non-blank string content."""
    messages = messages.combine_chunks()
    items = pc.list_flatten(messages)
    item_ok = pc.and_kleene(
        items.is_valid(),
        pc.and_kleene(
            pc.is_in(pc.struct_field(items, "role"), value_set=pa.array(sorted(ROLES))),
            _has_non_space(pc.struct_field(items, "content")),
        ),
    )
    item_ok = pc.fill_null(item_ok, False).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(messages).to_numpy()
    bad = np.bincount(parents[~item_ok], minlength=len(messages)) > 0
    lengths = pc.fill_null(pc.list_value_length(messages), 0).to_numpy()
    return pa.array((lengths > 0) & ~bad & messages.is_valid().to_numpy(zero_copy_only=False))


class _Sampling(NamedTuple):
    """Per row: whether its sampling parameters validate, their canonical JSON, max_tokens."""

    ok: pa.BooleanArray
    json: pa.StringArray  # null where not ok
    max_tokens: pa.Int32Array


def _sampling(table: pa.Table, validator: Validator) -> _Sampling:
    """The top-level sampling parameters of each row; each distinct combination of values is
    validated once, by the validator itself (so its cache and rules apply)."""
    given = [name for name in _SAMPLING_TYPES if table[name].null_count < table.num_rows]
    key = np.zeros(table.num_rows, np.int64)
    for name in given:
        codes = pc.dictionary_encode(table[name].combine_chunks())
        indices = pc.fill_null(pc.cast(codes.indices, pa.int64()), -1).to_numpy() + 1
        key = key * (len(codes.dictionary) + 1) + indices
        if len(codes.dictionary) > 1 << 20:  # keep the mixed-radix key far from overflow
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    outcomes = []
    for row in first:
        values = {name: table[name][int(row)].as_py() for name in given}
        outcomes.append(
            validator.sampling_outcome({k: v for k, v in values.items() if v is not None})
        )
    ok = np.array([o is not None for o in outcomes], np.bool_)[inverse]
    jsons = pa.array([o[0] if o else None for o in outcomes], pa.string()).take(inverse)
    max_tokens = pa.array([o[1] if o else None for o in outcomes], pa.int32()).take(inverse)
    return _Sampling(pa.array(ok), jsons, max_tokens)


def _accepted_rows(
    table: pa.Table,
    keep: pa.BooleanArray,
    sampling: _Sampling,
    index: Index,
    lines: _Lines,
    block: Block,
) -> pa.Table:
    rows = index[keep.to_numpy(zero_copy_only=False)]
    kept = table.filter(keep)
    return pa.Table.from_arrays(
        [
            pa.array(block.first_line + rows, pa.int64()),
            _request_ids(kept).combine_chunks(),
            kept["prompt"].combine_chunks(),
            _messages_json(kept["messages"].combine_chunks()),
            sampling.json.filter(keep),
            sampling.max_tokens.filter(keep),
            pa.array(block.offset + lines.starts[rows], pa.int64()),
            pa.array(lines.content_ends[rows] - lines.starts[rows], pa.int64()),
        ],
        schema=FAST_SCHEMA,
    )


def _messages_json(messages: pa.ListArray) -> pa.StringArray:
    """Canonical JSON of each list of messages, byte for byte what orjson writes with sorted
    keys: [{"content":"...","role":"..."},...]; null where there is no list."""
    items = pc.list_flatten(messages)
    content = _json_escape(pc.struct_field(items, "content"))
    role = pc.struct_field(items, "role")  # a known role: nothing to escape
    item_json = pc.binary_join_element_wise('{"content":"', content, '","role":"', role, '"}', "")
    lengths = pc.fill_null(pc.list_value_length(messages), 0).to_numpy()
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, item_json), ",")
    as_json = pc.binary_join_element_wise("[", joined, "]", "")
    return pc.if_else(messages.is_valid(), as_json, pa.scalar(None, pa.string()))


def _json_escape(strings: pa.StringArray) -> pa.StringArray:
    """Strings escaped as orjson escapes them inside a JSON string."""
    if not pc.any(pc.match_substring_regex(strings, _NEEDS_ESCAPE)).as_py():
        return strings
    for char, escaped in _SHORT_ESCAPES:
        strings = pc.replace_substring(strings, char, escaped)
    if pc.any(pc.match_substring_regex(strings, _OTHER_CONTROL)).as_py():
        for char in _OTHER_CONTROLS:
            strings = pc.replace_substring(strings, char, f"\\u{ord(char):04x}")
    return strings


def _undecided(block: Block, lines: _Lines, index: Index, max_line_bytes: int) -> list[RawRecord]:
    """The records of the lines `index` as read_jsonl makes them (blank lines dropped)."""
    records = []
    data = block.data
    for i in index:
        start, end = int(lines.starts[i]), int(lines.ends[i])
        line_no, offset = block.first_line + int(i), block.offset + start
        if end - start > max_line_bytes:
            text = data[start : start + max_line_bytes + 1]
            problem = line_too_long(end - start, max_line_bytes)
            records.append(RawRecord(line_no, b"", offset, end - start, text, problem))
            continue
        text = data[start:end].rstrip(b"\r\n")
        if text and not text.isspace():
            records.append(RawRecord(line_no, text, offset, len(text), text))
    return records
