"""Create, once, a tiny Llama-architecture model with random weights and a local tokenizer.

No weights can be downloaded here, so the demo model is built from scratch: a byte-level BPE
tokenizer trained on the bundled corpus (Python reference text) with a ChatML chat template,
and a LlamaForCausalLM with random weights in a shape the vLLM CPU engine accepts (head_dim
32 or more; see docs/environment.md). Its outputs are noise, its cost profile is real.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

CORPUS_PATH = Path(__file__).with_name("corpus.txt")

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True, slots=True)
class TinyModelShape:
    """Shape of the demo model; defaults are small enough to run fast on 1 CPU core."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 352
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024  # = the engine's max_model_len (tokens)
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def name(self) -> str:
        return (
            f"blend-tiny-llama-h{self.hidden_size}-l{self.num_hidden_layers}"
            f"-v{self.vocab_size}-ctx{self.max_position_embeddings}"
        )


def ensure_tiny_model(models_dir: Path, shape: TinyModelShape | None = None) -> Path:
    """Return the model folder under `models_dir`, creating it on first use.

    Creation is atomic (built in a temporary folder, then renamed), so a crash midway never
    leaves a half-written model that later runs would trust.
    """
    shape = shape or TinyModelShape()
    target = Path(models_dir) / shape.name
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{shape.name}-", dir=target.parent))
    try:
        _train_tokenizer(staging, shape)
        _write_random_model(staging, shape)
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race to a concurrent creator
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _train_tokenizer(out_dir: Path, shape: TinyModelShape) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=shape.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS_PATH.read_text(encoding="utf-8").splitlines(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=shape.max_position_embeddings,
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(str(out_dir))


def _write_random_model(out_dir: Path, shape: TinyModelShape) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer_vocab = json.loads((out_dir / "tokenizer.json").read_text())["model"]["vocab"]
    eos_id = tokenizer_vocab["<|im_end|>"]
    pad_id = tokenizer_vocab["<|endoftext|>"]
    config = LlamaConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=shape.max_position_embeddings,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
        dtype="bfloat16",
    )
    torch.manual_seed(shape.seed)
    model = LlamaForCausalLM(config).to(dtype=torch.bfloat16)  # type: ignore[call-arg]
    model.save_pretrained(str(out_dir), safe_serialization=True)
