"""Validation of single records: accepted rows, exact reject reasons, fast path == models."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from blend.ingest.formats import SourceFormat
from blend.ingest.records import PromptRow, RawRecord, RejectRow
from blend.ingest.validate import (
    DEFAULT_MAX_TOKENS,
    PromptInput,
    Reject,
    Sampling,
    Validator,
    prompt_of,
    reject_from,
)


def validate_line(line: bytes, fmt: SourceFormat = SourceFormat.JSONL) -> PromptRow | RejectRow:
    return Validator(fmt).validate(RawRecord(1, line, 0, len(line), line))


def reason_of(line: bytes, fmt: SourceFormat = SourceFormat.JSONL) -> str:
    outcome = validate_line(line, fmt)
    assert isinstance(outcome, RejectRow), outcome
    return outcome.reason


def test_prompt_record_is_accepted_with_canonical_sampling() -> None:
    line = b'{"custom_id": "a", "prompt": "Hello", "temperature": 1, "stop": "###", "x": 1}'
    assert validate_line(line) == PromptRow(
        line_no=1,
        request_id="a",
        prompt_sha256=hashlib.sha256(b"Hello").hexdigest(),
        prompt="Hello",
        messages_json=None,
        sampling_json='{"max_tokens":256,"stop":["###"],"temperature":1.0}',
        max_tokens=DEFAULT_MAX_TOKENS,
        raw_offset=0,
        raw_length=len(line),
    )


def test_messages_record_keeps_only_role_and_content_sorted() -> None:
    line = (
        b'{"id": 7, "messages": [{"content": "Be brief.", "role": "system", "name": "x"},'
        b' {"role": "user", "content": "Hi"}], "sampling": {"max_tokens": 9}, "metadata": {}}'
    )
    row = validate_line(line)
    messages_json = '[{"content":"Be brief.","role":"system"},{"content":"Hi","role":"user"}]'
    assert isinstance(row, PromptRow)
    assert (row.request_id, row.prompt, row.messages_json) == ("7", None, messages_json)
    assert row.prompt_sha256 == hashlib.sha256(messages_json.encode()).hexdigest()
    assert (row.sampling_json, row.max_tokens) == ('{"max_tokens":9}', 9)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"[1, 2]", "not a JSON object: got an array (JSON Lines holds one object per line)"),
        (b'"text"', "not a JSON object: got a string"),
        (b'{"custom_id": "x"}', "missing prompt: neither prompt nor messages given"),
        (b'{"prompt": "  \\n"}', "empty prompt: prompt: must not be empty or whitespace"),
        (b'{"messages": []}', "empty prompt: messages: must hold at least one message"),
        (
            b'{"messages": [{"role": "user", "content": ""}]}',
            "empty prompt: messages.0.content: must not be empty or whitespace",
        ),
        (
            b'{"prompt": "a", "temperature": "hot"}',
            "wrong type: temperature: Input should be a valid number, "
            "unable to parse string as a number",
        ),
        (
            b'{"prompt": "a", "temperature": [1]}',
            "wrong type: temperature: Input should be a valid number",
        ),
        (
            b'{"prompt": "a", "max_tokens": true}',
            "wrong type: max_tokens: Input should be a number, not a boolean",
        ),
        (
            b'{"prompt": "a", "max_tokens": 1.5}',
            "wrong type: max_tokens: Input should be a valid integer, "
            "got a number with a fractional part",
        ),
        (b'{"prompt": 5}', "wrong type: prompt: Input should be a valid string"),
        (b'{"messages": "hi"}', "wrong type: messages: Input should be a valid list"),
        (b'{"prompt": "a", "stop": [1]}', "wrong type: stop.0: Input should be a valid string"),
        (b'{"prompt": "a", "sampling": 3}', "wrong type: sampling: Input should be an object"),
        (
            b'{"prompt": "a", "custom_id": 1.5}',
            "wrong type: custom_id: Input should be a string or an integer",
        ),
        (
            b'{"prompt": "a", "max_tokens": 0}',
            "invalid value: max_tokens: Input should be greater than or equal to 1",
        ),
        (b'{"prompt": "a", "top_p": 0}', "invalid value: top_p: Input should be greater than 0"),
        (
            b'{"prompt": "a", "top_p": 1.5}',
            "invalid value: top_p: Input should be less than or equal to 1",
        ),
        (
            b'{"prompt": "a", "top_k": 0}',
            "invalid value: top_k: must be -1 (disabled) or >= 1, got 0",
        ),
        (
            b'{"prompt": "a", "n": 2}',
            "invalid value: n: must be 1 (one completion per request), got 2",
        ),
        (
            b'{"prompt": "a", "min_tokens": 10, "max_tokens": 5}',
            "invalid value: min_tokens (10) must not exceed max_tokens (5)",
        ),
        (
            b'{"prompt": "a", "sampling": {"temperature": -1}}',
            "invalid value: temperature: Input should be greater than or equal to 0",
        ),
        (
            b'{"prompt": "a", "temperature": 0.5, "sampling": {"temperature": 0.7}}',
            "invalid value: temperature: 0.5 at the top level but 0.7 in sampling",
        ),
        (
            b'{"prompt": "a", "messages": [{"role": "user", "content": "x"}]}',
            "invalid value: give prompt or messages, not both",
        ),
        (
            b'{"messages": [{"role": "tool", "content": "x"}]}',
            "invalid value: messages.0.role: Input should be 'system', 'user' or 'assistant'",
        ),
        (
            b'{"prompt": "a", "custom_id": " "}',
            "invalid value: custom_id: must not be empty or whitespace",
        ),
        (b'{"messages": [{"role": "user"}]}', "missing field: messages.0.content: Field required"),
    ],
)
def test_reject_reason(line: bytes, reason: str) -> None:
    assert reason_of(line) == reason


def test_malformed_json_names_the_position() -> None:
    reason = reason_of(b'{"prompt": "a",}')
    assert reason.startswith("malformed JSON: ")
    assert reason.endswith("line 1 column 15 (char 14)")


def test_invalid_utf8_is_its_own_category_and_raw_escapes_the_byte() -> None:
    line = b'{"prompt": "caf\xe9"}'
    assert validate_line(line) == RejectRow(
        1,
        "invalid UTF-8: invalid continuation byte: byte 0xe9 at offset 15",
        '{"prompt": "caf\\xe9"}',
    )


def chat_line(content: Any) -> bytes:
    return orjson.dumps({"messages": [{"role": "user", "content": content}]})


def test_text_parts_are_accepted_as_their_text_joined_by_newlines() -> None:
    """OpenAI's list-of-parts content, as vLLM reads it for a text model: texts joined by "\n"
    (the same prompt, hash and id as the joined string given directly)."""
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    row = validate_line(chat_line(parts))
    same = validate_line(chat_line("first\nsecond"))
    assert isinstance(row, PromptRow) and isinstance(same, PromptRow)
    assert row.messages_json == '[{"content":"first\\nsecond","role":"user"}]'
    assert row.prompt_sha256 == same.prompt_sha256


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}],
            "unsupported content: messages.0.content: part 1 has type 'image_url'; only text "
            "parts are supported (blend runs text-only models)",
        ),
        (
            [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}],
            "unsupported content: messages.0.content: part 0 has type 'input_audio'; only text "
            "parts are supported (blend runs text-only models)",
        ),
        ([], "empty prompt: messages.0.content: must hold at least one content part"),
        (
            [{"type": "text", "text": " "}],
            "empty prompt: messages.0.content: must not be empty or whitespace",
        ),
        (
            ["bare string"],
            "wrong type: messages.0.content: part 0: Input should be an object with type 'text' "
            "and a string text",
        ),
        (
            [{"text": "no type"}],
            "wrong type: messages.0.content: part 0: Input should be an object with type 'text' "
            "and a string text",
        ),
        (
            [{"type": "text", "text": ["nested"]}],
            "wrong type: messages.0.content: part 0: Input should be an object with type 'text' "
            "and a string text",
        ),
    ],
)
def test_content_part_reject_reason(content: Any, reason: str) -> None:
    assert reason_of(chat_line(content)) == reason


def test_openai_batch_lines_naming_a_model_are_counted() -> None:
    validator = Validator(SourceFormat.OPENAI_BATCH)
    bodies = [
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a"}]},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "b"}]},
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "c"}]},
        {"messages": [{"role": "user", "content": "d"}]},  # no model: not counted
        {"model": "rejected", "messages": []},  # a reject: not counted
    ]
    for body in bodies:
        line = batch_line("/v1/chat/completions", body)
        validator.validate(RawRecord(1, line, 0, len(line), line))
    named = validator.named_models
    assert (named.n_lines, dict(named.names)) == (3, {"gpt-4o-mini": 2, "gpt-4o": 1})


def batch_line(url: str, body: Any, **extra: Any) -> bytes:
    return orjson.dumps({"custom_id": "c", "method": "POST", "url": url, "body": body, **extra})


def test_openai_batch_chat_request() -> None:
    body = {
        "model": "ignored",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_completion_tokens": 32,
        "temperature": 0,
    }
    row = validate_line(batch_line("/v1/chat/completions", body), SourceFormat.OPENAI_BATCH)
    assert isinstance(row, PromptRow)
    assert (row.request_id, row.messages_json, row.sampling_json) == (
        "c",
        '[{"content":"Hi","role":"user"}]',
        '{"max_tokens":32,"temperature":0.0}',
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            batch_line("/v1/embeddings", {"input": "x"}),
            "unsupported url: '/v1/embeddings': "
            "supported are /v1/chat/completions, /v1/completions",
        ),
        (
            batch_line("/v1/completions", {"prompt": "x"}, method="GET"),
            "unsupported url: method 'GET': only POST requests can be run",
        ),
        (
            batch_line("/v1/chat/completions", {"prompt": "x"}),
            "missing prompt: a /v1/chat/completions request needs body.messages",
        ),
        (
            batch_line("/v1/completions", {"prompt": "x", "temperature": "a"}),
            "wrong type: body.temperature: Input should be a valid number, "
            "unable to parse string as a number",
        ),
        (
            batch_line(
                "/v1/completions", {"prompt": "x", "max_tokens": 3, "max_completion_tokens": 4}
            ),
            "invalid value: body.max_tokens (3) and body.max_completion_tokens (4) disagree",
        ),
        (batch_line("/v1/completions", "x"), "wrong type: body: Input should be an object"),
    ],
)
def test_openai_batch_reject_reason(line: bytes, reason: str) -> None:
    assert reason_of(line, SourceFormat.OPENAI_BATCH) == reason


def test_columns_parse_messages_json_and_lax_numbers() -> None:
    cells = {
        "id": "r1",
        "messages": '[{"role": "user", "content": "Hi"}]',
        "max_tokens": "12",
        "temperature": "0.5",
        "n": "1",
    }
    row = Validator(SourceFormat.CSV).validate(RawRecord(2, cells, 0, 0, b""))
    assert isinstance(row, PromptRow)
    assert (row.request_id, row.messages_json, row.sampling_json, row.max_tokens) == (
        "r1",
        '[{"content":"Hi","role":"user"}]',
        '{"max_tokens":12,"n":1,"temperature":0.5}',
        12,
    )


def test_columns_with_malformed_messages_json() -> None:
    outcome = Validator(SourceFormat.CSV).validate(RawRecord(2, {"messages": "[{"}, 0, 0, b"x"))
    assert isinstance(outcome, RejectRow)
    assert outcome.reason.startswith("malformed JSON: messages: ")


# --- the fast paths agree with the models -----------------------------------------------------


def model_prompt_outcome(body: dict[str, Any]) -> tuple[str | None, str | None] | str:
    """What PromptInput alone says about body: (prompt, messages_json) or the reject reason."""
    try:
        checked = PromptInput.model_validate(
            {"prompt": body.get("prompt"), "messages": body.get("messages")}
        )
    except ValidationError as error:
        return str(reject_from(error))
    if checked.messages is None:
        return checked.prompt, None
    messages = [{"content": m.content, "role": m.role} for m in checked.messages]
    return None, orjson.dumps(messages, option=orjson.OPT_SORT_KEYS).decode()


def fast_prompt_outcome(body: dict[str, Any]) -> tuple[str | None, str | None] | str:
    try:
        prompt, messages_json, _ = prompt_of(body, "")
    except Reject as reject:
        return str(reject)
    return prompt, messages_json


texts = st.sampled_from(["", " ", "\n\t", "hi", " x ", "é", "\u3000"])
parts = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image_url", 1])}, optional={"text": texts}
        ),
        texts,
    ),
    max_size=3,
)
values = st.one_of(
    texts, st.none(), st.integers(-2, 2), st.booleans(), st.lists(texts, max_size=2), parts
)
messages = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "assistant", "tool", 1]), "content": values}
        ),
        values,
    ),
    max_size=3,
)
bodies = st.fixed_dictionaries(
    {}, optional={"prompt": values, "messages": st.one_of(messages, values)}
)


@settings(max_examples=300)
@given(bodies)
def test_fast_prompt_path_agrees_with_the_model(body: dict[str, Any]) -> None:
    assert fast_prompt_outcome(body) == model_prompt_outcome(body)


sampling_values = st.one_of(
    st.none(), st.integers(-3, 600), st.floats(-3, 3), st.booleans(), st.sampled_from(["1", "x"])
)
samplings = st.dictionaries(
    st.sampled_from(sorted(Sampling.model_fields)), sampling_values, max_size=4
)


@settings(max_examples=200)
@given(st.lists(samplings, min_size=1, max_size=5))
def test_cached_sampling_agrees_with_a_fresh_validator(given_list: list[dict[str, Any]]) -> None:
    """A Validator reused across records (cache warm) says what a fresh one says."""
    warm = Validator(SourceFormat.JSONL)
    for sampling in given_list:
        line = orjson.dumps({"prompt": "p", **sampling})
        first = warm.validate(RawRecord(1, line, 0, len(line), line))
        again = warm.validate(RawRecord(1, line, 0, len(line), line))
        assert first == again == validate_line(line)
