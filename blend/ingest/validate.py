"""Turn a raw record into an accepted prompt row or a reject reason.

The rules are the pydantic models below (`Message`, `PromptInput`, `Sampling`). Because ingest
runs on millions of rows, the common shapes take a fast path that checks exactly what the
models check (a non-blank string prompt; messages that are dicts with a known role and
non-blank string content; sampling parameters seen before, whose validated result is cached)
and falls back to the models for everything else, so error messages always come from one place.
tests/ingest/test_ingest_validate.py checks that both paths agree.

A reject reason reads "<category>: <field path>: <message>", e.g.
"wrong type: temperature: Input should be a valid number".
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from blend.engines.sampling_fields import SAMPLING_FIELDS
from blend.ingest.formats import SourceFormat, is_openai_batch_request
from blend.ingest.records import PromptRow, RawRecord, RejectRow, raw_text, render_row

DEFAULT_MAX_TOKENS = 256
# No model generates more than its context, and no context is near 2**20 tokens; a larger value
# is a typo (and would not fit the INTEGER column).
MAX_MAX_TOKENS = 1 << 20

ID_FIELDS = ("custom_id", "id")  # custom_id wins when both are given
# Every column a CSV / Parquet input may use; others are ignored.
INPUT_COLUMNS = frozenset({*ID_FIELDS, "prompt", "messages", "sampling", *SAMPLING_FIELDS})
ROLES = frozenset({"system", "user", "assistant"})
# The content part type a chat message may hold (OpenAI's {"type": "text", "text": ...}); the
# parts' texts are joined with TEXT_PART_SEPARATOR, as vLLM's chat parsing joins them for a
# text-only model, so the stored text is what the engine would be given.
TEXT_PART = "text"
TEXT_PART_SEPARATOR = "\n"

# The reject category of a record of the other JSONL flavour (batch request vs plain prompt).
MIXED_FORMATS = "mixed formats"

OPENAI_URLS = {"/v1/chat/completions": "messages", "/v1/completions": "prompt"}

# Distinct body.model names remembered by NamedModels (the lines beyond are counted, not named).
MAX_MODEL_NAMES = 8

# Distinct sampling inputs whose validated result is remembered; the cache is cleared when full
# so memory stays bounded when every row has its own seed.
_SAMPLING_CACHE_SIZE = 4096


class Reject(Exception):
    """Raised inside validation: the record is rejected for `reason` ("<category>: <detail>")."""

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(f"{category}: {detail}")


# --- the rules -------------------------------------------------------------------------------


def _non_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("empty_prompt", "must not be empty or whitespace")
    return text


def _non_empty_list(items: list[Any]) -> list[Any]:
    if not items:
        raise PydanticCustomError("empty_prompt", "must hold at least one message")
    return items


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode reads true as 1; a boolean sampling value is almost surely a mistake.
    if isinstance(value, bool):
        raise PydanticCustomError("wrong_type", "Input should be a number, not a boolean")
    return value


def _content_text(content: Any) -> Any:
    """Message content given as a list of parts -> the text of its parts, joined with
    TEXT_PART_SEPARATOR; any other value is left to the string check."""
    if type(content) is not list:
        return content
    if not content:
        raise PydanticCustomError("empty_prompt", "must hold at least one content part")
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if type(part) is dict else None
        if kind is not None and kind != TEXT_PART:
            raise PydanticCustomError(
                "unsupported_part",
                "part {index} has type {kind}; only text parts are supported "
                "(blend runs text-only models)",
                {"index": index, "kind": repr(kind)},
            )
        text = part.get("text") if kind is not None else None
        if type(text) is not str:
            raise PydanticCustomError(
                "wrong_type",
                "part {index}: Input should be an object with type 'text' and a string text",
                {"index": index},
            )
        texts.append(text)
    return TEXT_PART_SEPARATOR.join(texts)


def _stop_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _top_k_range(value: int) -> int:
    if value != -1 and value < 1:
        raise PydanticCustomError(
            "invalid_value", "must be -1 (disabled) or >= 1, got {value}", {"value": value}
        )
    return value


def _only_one(value: int) -> int:
    if value != 1:
        raise PydanticCustomError(
            "invalid_value", "must be 1 (one completion per request), got {value}", {"value": value}
        )
    return value


def _default_max_tokens(value: Any) -> Any:
    return DEFAULT_MAX_TOKENS if value is None else value


NonBlank = Annotated[str, AfterValidator(_non_blank)]
Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]


class Message(BaseModel):
    """One chat message; keys other than role and content are dropped. Content is a string or
    a list of text parts (kept as their joined text)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: Annotated[NonBlank, BeforeValidator(_content_text)]


class PromptInput(BaseModel):
    """What to complete: exactly one of a prompt string or a non-empty list of messages."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    prompt: NonBlank | None = None
    messages: Annotated[list[Message], AfterValidator(_non_empty_list)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PromptInput:
        if self.prompt is None and self.messages is None:
            raise PydanticCustomError("missing_prompt", "neither prompt nor messages given")
        if self.prompt is not None and self.messages is not None:
            raise PydanticCustomError("invalid_value", "give prompt or messages, not both")
        return self


class Sampling(BaseModel):
    """Sampling parameters, with vLLM's ranges; None means "engine default"."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    max_tokens: Annotated[int, BeforeValidator(_default_max_tokens), BeforeValidator(_no_bool)] = (
        Field(default=DEFAULT_MAX_TOKENS, ge=1, le=MAX_MAX_TOKENS)
    )
    temperature: Annotated[Float, Field(ge=0)] | None = None
    top_p: Annotated[Float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[Int, AfterValidator(_top_k_range)] | None = None
    seed: Int | None = None
    stop: Annotated[list[str], BeforeValidator(_stop_list)] | None = None
    presence_penalty: Annotated[Float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[Float, Field(ge=-2, le=2)] | None = None
    repetition_penalty: Annotated[Float, Field(gt=0)] | None = None
    min_tokens: Annotated[Int, Field(ge=0)] | None = None
    n: Annotated[Int, AfterValidator(_only_one)] | None = None

    @model_validator(mode="after")
    def _min_within_max(self) -> Sampling:
        if self.min_tokens is not None and self.min_tokens > self.max_tokens:
            raise PydanticCustomError(
                "invalid_value",
                "min_tokens ({min}) must not exceed max_tokens ({max})",
                {"min": self.min_tokens, "max": self.max_tokens},
            )
        return self


# --- pydantic errors -> reasons --------------------------------------------------------------

_CATEGORY_BY_ERROR = {
    "empty_prompt": "empty prompt",
    "unsupported_part": "unsupported content",
    "missing_prompt": "missing prompt",
    "missing": "missing field",
    "int_from_float": "wrong type",
}


def _category(error_type: str) -> str:
    category = _CATEGORY_BY_ERROR.get(error_type)
    if category is not None:
        return category
    if error_type.endswith(("_type", "_parsing")):
        return "wrong type"
    return "invalid value"


def reject_from(error: ValidationError, where: str = "") -> Reject:
    """A Reject for the first error of `error`; `where` prefixes the field path ("body.")."""
    errors = error.errors(include_url=False)
    first = errors[0]
    path = ".".join(str(part) for part in first["loc"])
    detail = f"{where}{path}: {first['msg']}" if path else first["msg"]
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return Reject(_category(first["type"]), detail)


# --- the validator ---------------------------------------------------------------------------


@dataclass(slots=True)
class NamedModels:
    """The accepted OpenAI batch lines whose body names a model, which blend does not use (the
    run's model answers every request): how many, and the first MAX_MODEL_NAMES names."""

    n_lines: int = 0
    names: Counter[str] = field(default_factory=Counter)  # name -> lines naming it

    def add(self, model: object) -> None:
        if model is None:
            return
        self.n_lines += 1
        name = str(model)
        if name in self.names or len(self.names) < MAX_MODEL_NAMES:
            self.names[name] += 1


class Validator:
    """Validates the records of one input file (one format); not thread-safe (it caches)."""

    def __init__(self, fmt: SourceFormat) -> None:
        self._parse: Callable[[Any], dict[str, Any]] = (
            parse_json_line
            if fmt in (SourceFormat.JSONL, SourceFormat.OPENAI_BATCH)
            else parse_columns
        )
        self._openai_batch = fmt is SourceFormat.OPENAI_BATCH
        self._plain_jsonl = fmt is SourceFormat.JSONL
        self._sampling_cache: dict[bytes, tuple[str, int] | Reject] = {}
        self.named_models = NamedModels()  # OpenAI batch lines with a body.model

    def validate(self, record: RawRecord) -> PromptRow | RejectRow:
        """The accepted row for `record`, or why it is rejected."""
        if record.problem is not None:
            return _reject(record, record.problem)
        try:
            obj = self._parse(record.data)
            if self._openai_batch:
                return self._accept_openai_batch(obj, record)
            if self._plain_jsonl:
                _not_a_batch_request(obj)
            return self._accept(obj, obj, "", record)
        except Reject as reject:
            return _reject(record, str(reject))

    def sampling_outcome(self, given: dict[str, Any]) -> tuple[str, int] | None:
        """(canonical sampling JSON, max_tokens) of top-level JSONL sampling parameters, or
        None when they are rejected (validate() then tells why)."""
        try:
            return self._sampling(given, "")
        except Reject:
            return None

    def _accept(
        self, envelope: dict[str, Any], body: dict[str, Any], where: str, record: RawRecord
    ) -> PromptRow:
        """Build the row: the id from `envelope`, prompt and sampling from `body`."""
        request_id = request_id_of(envelope)
        prompt, messages_json, digest = prompt_of(body, where)
        sampling_json, max_tokens = self._sampling(sampling_input(body, where), where)
        return PromptRow(
            record.line_no,
            request_id,
            digest,
            prompt,
            messages_json,
            sampling_json,
            max_tokens,
            record.offset,
            record.length,
        )

    def _accept_openai_batch(self, obj: dict[str, Any], record: RawRecord) -> PromptRow:
        if "url" not in obj and "body" not in obj and ("prompt" in obj or "messages" in obj):
            raise Reject(
                MIXED_FORMATS,
                "a plain prompt record (no url, no body) in a file read as OpenAI batch input "
                "(its first record is a batch request); put plain records in a file of their own",
            )
        body = openai_body(obj)
        row = self._accept(obj, body, "body.", record)
        self.named_models.add(body.get("model"))
        return row

    def _sampling(self, given: dict[str, Any], where: str) -> tuple[str, int]:
        """(canonical sampling JSON, max_tokens) for the given parameters, cached by value."""
        try:
            key = orjson.dumps(given, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # a value orjson cannot write (e.g. bytes from Parquet): no caching
            return _validate_sampling(given, where)
        outcome = self._sampling_cache.get(key)
        if outcome is None:
            try:
                outcome = _validate_sampling(given, where)
            except Reject as reject:
                outcome = reject
            if len(self._sampling_cache) >= _SAMPLING_CACHE_SIZE:
                self._sampling_cache.clear()
            self._sampling_cache[key] = outcome
        if isinstance(outcome, Reject):
            raise outcome
        return outcome


def _not_a_batch_request(obj: dict[str, Any]) -> None:
    """Reject an OpenAI batch request met in a plain JSONL file with a reason saying so."""
    if "prompt" not in obj and "messages" not in obj and is_openai_batch_request(obj):
        raise Reject(
            MIXED_FORMATS,
            "an OpenAI batch request (url, body) in a file read as plain JSONL (its first "
            "record is a plain prompt); put batch requests in a file of their own",
        )


def _reject(record: RawRecord, reason: str) -> RejectRow:
    raw = record.raw
    if raw is None:
        assert isinstance(record.data, dict)
        raw = render_row(record.data)
    return RejectRow(record.line_no, reason, raw_text(raw))


# --- the parts of a record -------------------------------------------------------------------


def parse_json_line(data: bytes) -> dict[str, Any]:
    """The JSON object on a line; rejects malformed JSON, invalid UTF-8 and non-objects."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise _json_reject(data, error) from None
    if type(obj) is not dict:
        hint = " (JSON Lines holds one object per line)" if type(obj) is list else ""
        raise Reject("not a JSON object", f"got {_json_type(obj)}{hint}")
    return obj


def _json_reject(data: bytes, error: orjson.JSONDecodeError) -> Reject:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Reject(
            "invalid UTF-8", f"{bad.reason}: byte 0x{data[bad.start]:02x} at offset {bad.start}"
        )
    return Reject("malformed JSON", str(error))


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def parse_columns(row: dict[str, Any]) -> dict[str, Any]:
    """A CSV / Parquet row as a record: JSON-string cells of messages / sampling parsed.

    `row` itself is left as it is (a reject shows the row as read).
    """
    for column in ("messages", "sampling"):
        value = row.get(column)
        if isinstance(value, str):
            try:
                row = {**row, column: orjson.loads(value)}
            except orjson.JSONDecodeError as error:
                raise Reject("malformed JSON", f"{column}: {error}") from None
    return row


def request_id_of(obj: dict[str, Any]) -> str | None:
    """The record's custom_id (or id) as a string; None when it has neither."""
    key, value = ID_FIELDS[0], obj.get(ID_FIELDS[0])
    if value is None:
        key, value = ID_FIELDS[1], obj.get(ID_FIELDS[1])
    if value is None:
        return None
    if type(value) is int:
        return str(value)
    if type(value) is not str:
        raise Reject("wrong type", f"{key}: Input should be a string or an integer")
    if not value.strip():
        raise Reject("invalid value", f"{key}: must not be empty or whitespace")
    return value


def prompt_of(body: dict[str, Any], where: str) -> tuple[str | None, str | None, str]:
    """(prompt, canonical messages JSON, prompt_sha256): exactly one of the first two is set."""
    prompt = body.get("prompt")
    messages = body.get("messages")
    if messages is None and type(prompt) is str and prompt and not prompt.isspace():
        return prompt, None, hashlib.sha256(prompt.encode()).hexdigest()
    canonical = _fast_messages(messages) if prompt is None else None
    if canonical is None:
        try:
            checked = PromptInput.model_validate({"prompt": prompt, "messages": messages})
        except ValidationError as error:
            raise reject_from(error, where) from None
        if checked.prompt is not None:
            return checked.prompt, None, hashlib.sha256(checked.prompt.encode()).hexdigest()
        assert checked.messages is not None  # the model guarantees one of the two
        canonical = _canonical_messages([(m.role, m.content) for m in checked.messages])
    return None, canonical.decode(), hashlib.sha256(canonical).hexdigest()


def _fast_messages(messages: Any) -> bytes | None:
    """Canonical JSON of `messages` when Message would accept every item as is, else None."""
    if type(messages) is not list or not messages:
        return None
    pairs = []
    for message in messages:
        if type(message) is not dict:
            return None
        role, content = message.get("role"), message.get("content")
        if type(role) is not str or role not in ROLES:
            return None
        if type(content) is list:
            content = _fast_parts_text(content)
        if type(content) is not str or not content or content.isspace():
            return None
        pairs.append((role, content))
    return _canonical_messages(pairs)


def _fast_parts_text(parts: list[Any]) -> str | None:
    """The joined text of a non-empty list of text parts (as _content_text), else None."""
    texts = []
    for part in parts:
        if type(part) is not dict or part.get("type") != TEXT_PART:
            return None
        text = part.get("text")
        if type(text) is not str:
            return None
        texts.append(text)
    return TEXT_PART_SEPARATOR.join(texts) if texts else None


def _canonical_messages(pairs: list[tuple[str, str]]) -> bytes:
    return orjson.dumps(
        [{"content": content, "role": role} for role, content in pairs],
        option=orjson.OPT_SORT_KEYS,
    )


def sampling_input(body: dict[str, Any], where: str) -> dict[str, Any]:
    """The sampling fields given at the top level and in a nested "sampling" object, merged.

    A field given in both places with different values is rejected rather than guessed.
    """
    given = {key: body[key] for key in body.keys() & SAMPLING_FIELDS}
    nested = body.get("sampling")
    if nested is None:
        return given
    if type(nested) is not dict:
        raise Reject("wrong type", f"{where}sampling: Input should be an object")
    for key in nested.keys() & given.keys():
        if nested[key] != given[key]:
            raise Reject(
                "invalid value",
                f"{where}{key}: {given[key]!r} at the top level but {nested[key]!r} in sampling",
            )
    return {**given, **nested}


def _validate_sampling(given: dict[str, Any], where: str) -> tuple[str, int]:
    try:
        sampling = Sampling.model_validate(given)
    except ValidationError as error:
        raise reject_from(error, where) from None
    canonical = orjson.dumps(sampling.model_dump(exclude_none=True), option=orjson.OPT_SORT_KEYS)
    return canonical.decode(), sampling.max_tokens


def openai_body(obj: dict[str, Any]) -> dict[str, Any]:
    """The request body of one OpenAI batch line, holding only the prompt key its url uses.

    body.model is not used (the run chooses the model; Validator.named_models counts the lines
    that name one); max_completion_tokens is max_tokens.
    """
    method, url = obj.get("method", "POST"), obj.get("url")
    if method != "POST":
        raise Reject("unsupported url", f"method {method!r}: only POST requests can be run")
    prompt_key = OPENAI_URLS.get(url) if isinstance(url, str) else None
    if prompt_key is None:
        given = "no url given" if url is None else repr(url)
        raise Reject("unsupported url", f"{given}: supported are {', '.join(OPENAI_URLS)}")
    body = obj.get("body")
    if type(body) is not dict:
        raise Reject("wrong type", "body: Input should be an object")
    if body.get(prompt_key) is None:
        raise Reject("missing prompt", f"a {url} request needs body.{prompt_key}")
    other_key = "prompt" if prompt_key == "messages" else "messages"
    picked = {key: value for key, value in body.items() if key != other_key}
    return _max_completion_tokens(picked)


def _max_completion_tokens(body: dict[str, Any]) -> dict[str, Any]:
    limit = body.pop("max_completion_tokens", None)
    if limit is None:
        return body
    old = body.get("max_tokens")
    if old is not None and old != limit:
        raise Reject(
            "invalid value",
            f"body.max_tokens ({old!r}) and body.max_completion_tokens ({limit!r}) disagree",
        )
    body["max_tokens"] = limit
    return body
