"""blend.engines.tokenize on the real tiny model: chat template, raw prompts, hashes, context
length."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer, processors

from blend.demo.model import CORPUS_PATH
from blend.engines.tokenize import (
    _encode,
    encode_batch,
    load_tokenizer,
    model_max_len,
    tokenizer_sha256,
)

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Sort a list in Python."},
]
CORPUS_SAMPLE = CORPUS_PATH.read_text(encoding="utf-8")[:4000]
CHAT_TEXT = (
    "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n"
    "<|im_start|>user\nSort a list in Python.<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def test_chat_rows_get_the_chatml_template(profile_tokenizer):
    [ids] = encode_batch(profile_tokenizer, [None], [json.dumps(MESSAGES)])
    im_start = profile_tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == im_start
    assert profile_tokenizer.decode(ids) == CHAT_TEXT
    assert profile_tokenizer.decode(ids).endswith("<|im_start|>assistant\n")


def test_raw_prompts_are_encoded_without_template(profile_tokenizer):
    prompt = "def sort(xs):\n    return sorted(xs)"
    [ids] = encode_batch(profile_tokenizer, [prompt], [None])
    assert ids == profile_tokenizer(prompt)["input_ids"]
    assert profile_tokenizer.decode(ids) == prompt
    assert profile_tokenizer.convert_tokens_to_ids("<|im_start|>") not in ids


def test_mixed_rows_keep_their_order(profile_tokenizer):
    prompts = ["first", None, "third", None]
    messages = [None, json.dumps(MESSAGES), None, json.dumps(MESSAGES[1:])]
    decoded = [
        profile_tokenizer.decode(ids) for ids in encode_batch(profile_tokenizer, prompts, messages)
    ]
    assert decoded == [
        "first",
        CHAT_TEXT,
        "third",
        "<|im_start|>user\nSort a list in Python.<|im_end|>\n<|im_start|>assistant\n",
    ]


def test_empty_batch(profile_tokenizer):
    assert encode_batch(profile_tokenizer, [], []) == []


def test_row_with_neither_prompt_nor_messages_is_an_error(profile_tokenizer):
    with pytest.raises(ValueError, match="Row 1 has neither"):
        encode_batch(profile_tokenizer, ["ok", None], [None, None])


def test_missing_chat_template_names_the_model_dir(profile_model_dir, tmp_path):
    bare = _copy_model(profile_model_dir, tmp_path / "no-template")
    (bare / "chat_template.jinja").unlink()
    tokenizer = load_tokenizer(bare)
    assert encode_batch(tokenizer, ["raw rows still work"], [None])[0]
    with pytest.raises(ValueError, match="no chat template") as error:
        encode_batch(tokenizer, [None], [json.dumps(MESSAGES)])
    assert str(bare) in str(error.value)


def test_hash_is_stable_and_covers_the_tokenizer_files(profile_model_dir):
    files = ["chat_template.jinja", "tokenizer.json", "tokenizer_config.json"]
    expected = hashlib.sha256(b"".join((profile_model_dir / f).read_bytes() for f in files))
    assert tokenizer_sha256(profile_model_dir) == expected.hexdigest()
    assert tokenizer_sha256(profile_model_dir) == tokenizer_sha256(profile_model_dir)


@pytest.mark.parametrize(
    "changed", ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]
)
def test_hash_changes_with_a_tokenizer_file(profile_model_dir, tmp_path, changed):
    copy = _copy_model(profile_model_dir, tmp_path / "copy")
    assert tokenizer_sha256(copy) == tokenizer_sha256(profile_model_dir)
    with (copy / changed).open("a", encoding="utf-8") as f:
        f.write("\n")
    assert tokenizer_sha256(copy) != tokenizer_sha256(profile_model_dir)


def test_hash_ignores_weights(profile_model_dir, tmp_path):
    copy = _copy_model(profile_model_dir, tmp_path / "copy")
    (copy / "model.safetensors").write_bytes(b"other weights")
    assert tokenizer_sha256(copy) == tokenizer_sha256(profile_model_dir)


def test_model_max_len(profile_model_dir):
    assert model_max_len(profile_model_dir) == 1024


def test_model_max_len_errors_name_the_file(profile_model_dir, tmp_path):
    copy = _copy_model(profile_model_dir, tmp_path / "copy")
    config = json.loads((copy / "config.json").read_text())
    del config["max_position_embeddings"]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="max_position_embeddings") as error:
        model_max_len(copy)
    assert str(copy / "config.json") in str(error.value)
    (copy / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        model_max_len(copy)


def test_folder_without_tokenizer_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        tokenizer_sha256(tmp_path)


def _copy_model(model_dir: Path, target: Path) -> Path:
    shutil.copytree(model_dir, target)
    return target


@pytest.mark.parametrize("add_special_tokens", [False, True])
def test_fast_path_equals_the_transformers_call(profile_tokenizer, add_special_tokens):
    texts = ["", "x", CHAT_TEXT, CORPUS_SAMPLE, "<|im_start|>user\nhi<|im_end|>"]
    expected = profile_tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]
    assert _encode(profile_tokenizer, texts, add_special_tokens=add_special_tokens) == expected


def test_backend_truncation_is_ignored(profile_model_dir):
    tokenizer = load_tokenizer(profile_model_dir)  # own copy: its backend state changes
    tokenizer.backend_tokenizer.enable_truncation(max_length=5)
    [ids] = encode_batch(tokenizer, [CORPUS_SAMPLE], [None])
    assert ids == load_tokenizer(profile_model_dir)(CORPUS_SAMPLE)["input_ids"]
    assert len(ids) > 5


def test_raw_prompts_get_the_tokenizers_special_tokens_chat_rows_do_not(
    profile_model_dir, tmp_path
):
    # Like vLLM: completion prompts are encoded with special tokens (a BOS here), chat text is
    # encoded without them because the chat template writes its own.
    with_bos = _copy_model(profile_model_dir, tmp_path / "with-bos")
    backend = Tokenizer.from_file(str(with_bos / "tokenizer.json"))
    bos_id = backend.token_to_id("<|endoftext|>")
    backend.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos_id)]
    )
    backend.save(str(with_bos / "tokenizer.json"))
    tokenizer = load_tokenizer(with_bos)
    raw, chat = encode_batch(tokenizer, ["hello", None], [None, json.dumps(MESSAGES)])
    assert raw[0] == bos_id and raw[1:] == tokenizer("hello", add_special_tokens=False)["input_ids"]
    assert bos_id not in chat
    assert tokenizer.decode(chat) == CHAT_TEXT
