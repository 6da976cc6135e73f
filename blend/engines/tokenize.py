"""Turn prompts into the exact token ids the engine will be fed.

Invariant: for every row, `encode_batch` returns what vLLM computes for the same request -
chat rows are rendered with the model's chat template (generation prompt appended) and encoded
without adding special tokens (the template already holds them); raw prompt rows are encoded
completion-style, with the tokenizer's own special tokens (e.g. a BOS) and no template.

Prompts are data: the only code that sees them is the model's own chat template, and
transformers renders it in jinja2's ImmutableSandboxedEnvironment, so a template (or a prompt)
cannot reach Python internals (`__class__`, `__globals__`...). A template that fails, for all
rows or for some, raises ChatTemplateError naming the model folder and the failing rows.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from transformers import AutoTokenizer, PreTrainedTokenizerFast

MAX_NAMED_ROWS = 10  # failing rows named in a ChatTemplateError message

# Files whose bytes decide the token ids of a prompt (hashed when present, in sorted order).
TOKENIZER_FILES = (
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
)


class ChatTemplateError(ValueError):
    """The model's chat template failed to render some rows (named by `rows`)."""

    def __init__(self, message: str, rows: Sequence[str]) -> None:
        super().__init__(message)
        self.rows = tuple(rows)

    def __reduce__(self) -> tuple[type[ChatTemplateError], tuple[str, tuple[str, ...]]]:
        # raised in a tokenizer worker process (blend/profile/token_batches.py), it is pickled
        # back to the driver: rebuild it from both arguments, not from args alone
        return type(self), (str(self), self.rows)


def load_tokenizer(model_dir: str | Path) -> PreTrainedTokenizerFast:
    """Load the fast (Rust) tokenizer of a local model folder; never touches the network."""
    path = Path(model_dir)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"No tokenizer.json in {path}: blend needs a model folder with a fast tokenizer "
            "(save it with tokenizer.save_pretrained(...))"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True, local_files_only=True)
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise TypeError(f"The tokenizer in {path} is not a fast tokenizer: {type(tokenizer)}")
    return tokenizer


def tokenizer_files(model_dir: str | Path) -> dict[str, bytes]:
    """The bytes of the files that make the tokenizer (TOKENIZER_FILES and config.json, where
    present), to load it where the model folder is not (a Ray node: load_shipped_tokenizer)."""
    path = Path(model_dir)
    names = [*TOKENIZER_FILES, "config.json"]  # config.json: the class when the config lacks it
    return {name: (path / name).read_bytes() for name in names if (path / name).is_file()}


def load_shipped_tokenizer(files: dict[str, bytes], model_dir: str) -> PreTrainedTokenizerFast:
    """The tokenizer of `tokenizer_files(model_dir)`, loaded from a temporary folder; errors
    name `model_dir`, the folder the files came from."""
    with tempfile.TemporaryDirectory(prefix="blend-tokenizer-") as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        tokenizer = load_tokenizer(folder)
    tokenizer.name_or_path = model_dir
    return tokenizer


def tokenizer_sha256(model_dir: str | Path) -> str:
    """Hex sha256 over the bytes of the tokenizer files present, in sorted name order.

    Equal to `cat <present files of TOKENIZER_FILES, sorted> | sha256sum`, so anyone can check
    it; any change to a file that decides token ids changes the hash.
    """
    path = Path(model_dir)
    present = [path / name for name in sorted(TOKENIZER_FILES) if (path / name).is_file()]
    if not any(p.name == "tokenizer.json" for p in present):
        raise FileNotFoundError(f"No tokenizer.json in {path}: cannot identify its tokenizer")
    digest = hashlib.sha256()
    for file in present:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def model_max_len(model_dir: str | Path) -> int:
    """The model's context length in tokens (config.json `max_position_embeddings`).

    Multimodal configs keep it under `text_config`; that is used when the top level lacks it.
    """
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"No model config at {config_path}")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    value = config.get("max_position_embeddings")
    if value is None:
        value = (config.get("text_config") or {}).get("max_position_embeddings")
    if not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"{config_path} has no positive integer max_position_embeddings (found {value!r})"
        )
    return value


def encode_batch(
    tokenizer: PreTrainedTokenizerFast,
    prompts: Sequence[str | None],
    messages_json: Sequence[str | None],
    row_names: Sequence[str] | None = None,
) -> list[list[int]]:
    """Token ids per row, in row order; a row is chat when its messages_json is not null.

    Both groups are encoded with one batched call each (Rust, parallel over rows).
    row_names (e.g. request ids) name the rows in a ChatTemplateError; default: row numbers.
    """
    if len(prompts) != len(messages_json):
        raise ValueError(f"{len(prompts)} prompts but {len(messages_json)} messages_json values")
    chat_rows = [i for i, m in enumerate(messages_json) if m is not None]
    raw_rows = [i for i, m in enumerate(messages_json) if m is None]
    out: list[list[int]] = [[] for _ in prompts]
    if chat_rows:
        names = [str(row_names[i]) if row_names is not None else f"row {i}" for i in chat_rows]
        texts = render_chat(tokenizer, [messages_json[i] or "" for i in chat_rows], names)
        _scatter(out, chat_rows, _encode(tokenizer, texts, add_special_tokens=False))
    if raw_rows:
        texts = [_raw_prompt(prompts[i], i) for i in raw_rows]
        _scatter(out, raw_rows, _encode(tokenizer, texts, add_special_tokens=True))
    return out


def render_chat(
    tokenizer: PreTrainedTokenizerFast,
    messages_json: Sequence[str],
    row_names: Sequence[str] | None = None,
) -> list[str]:
    """The prompt text of each conversation: chat template with the generation prompt.

    Rendered by transformers in a jinja2 sandbox. Raises ChatTemplateError (naming the model
    folder and the conversations, by row_names, that failed) when the template fails.
    """
    if not tokenizer.chat_template:
        raise ValueError(
            f"The tokenizer in {tokenizer.name_or_path} has no chat template, so chat rows "
            "(messages) cannot be rendered; use a model folder with a chat_template"
        )
    conversations: list[Any] = [json.loads(m) for m in messages_json]
    try:
        texts = _apply_template(tokenizer, conversations)
    except jinja2.TemplateError as exc:
        names = row_names or [f"row {i}" for i in range(len(conversations))]
        raise _template_failure(tokenizer, conversations, names, exc) from None
    return [str(t) for t in texts]


def _apply_template(tokenizer: PreTrainedTokenizerFast, conversations: list[Any]) -> list[Any]:
    texts = tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True)
    return list(texts)


def _template_failure(
    tokenizer: PreTrainedTokenizerFast,
    conversations: list[Any],
    names: Sequence[str],
    batch_error: jinja2.TemplateError,
) -> ChatTemplateError:
    """Render the conversations one by one to name those the template fails on, and why."""
    failed: list[str] = []
    first_error: jinja2.TemplateError | None = None
    for name, conversation in zip(names, conversations, strict=True):
        try:
            _apply_template(tokenizer, [conversation])
        except jinja2.TemplateError as exc:
            failed.append(name)
            first_error = first_error or exc
    first_error = first_error or batch_error
    failed = failed or list(names)  # fails only in a batch: every row is suspect
    listed = ", ".join(failed[:MAX_NAMED_ROWS]) + (", ..." if len(failed) > MAX_NAMED_ROWS else "")
    unsafe = isinstance(first_error, jinja2.exceptions.SecurityError)
    return ChatTemplateError(
        f"the chat template of the model folder {tokenizer.name_or_path} failed on "
        f"{len(failed)} of {len(conversations)} prompts ({listed}): "
        f"{type(first_error).__name__}: {first_error}"
        + (
            "; the sandbox refused what the template tried: do not trust this model folder"
            if unsafe
            else "; fix the prompts or the template (chat_template.jinja, tokenizer_config.json)"
        ),
        failed,
    )


def _encode(
    tokenizer: PreTrainedTokenizerFast, texts: list[str], *, add_special_tokens: bool
) -> list[list[int]]:
    """Token ids of `texts`, equal to `tokenizer(texts, ...)["input_ids"]`."""
    backend = tokenizer.backend_tokenizer
    if _plain_backend(tokenizer):
        # Same ids without computing character offsets: ~25% faster on long prompts.
        encodings = backend.encode_batch_fast(texts, add_special_tokens=add_special_tokens)
        return [encoding.ids for encoding in encodings]
    encoded = tokenizer(
        texts,
        add_special_tokens=add_special_tokens,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,  # over-length prompts are the profile's to report, not a log warning
    )
    ids: list[list[int]] = encoded["input_ids"]
    return ids


def _plain_backend(tokenizer: PreTrainedTokenizerFast) -> bool:
    """Whether the Rust tokenizer, called directly, encodes as the transformers call does.

    transformers turns off truncation and padding and sets special-token splitting before
    each call; when the backend is already in that state, calling it directly is equivalent.
    """
    backend = tokenizer.backend_tokenizer
    return (
        hasattr(backend, "encode_batch_fast")
        and backend.truncation is None
        and backend.padding is None
        and backend.encode_special_tokens == bool(tokenizer.split_special_tokens)
    )


def _raw_prompt(prompt: str | None, row: int) -> str:
    if prompt is None:
        raise ValueError(f"Row {row} has neither a prompt nor messages_json")
    return prompt


def _scatter(out: list[list[int]], rows: list[int], values: list[list[int]]) -> None:
    for row, value in zip(rows, values, strict=True):
        out[row] = value
