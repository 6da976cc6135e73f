"""The `hetegen` engine: batched generation with a KV cache over a transformers causal LM whose
linear layers are split between the CPU and the GPU by a HeteGen placement (blend/hetegen).

For models whose weights do not fit the GPU. Batching is by waves: up to max_num_seqs waiting
requests (as many as the token budget and the KV cache allow) are prefilled together, left
padded under an attention mask, then decoded step by step with transformers' KV cache; a
request is yielded in the step it finishes and its row leaves the batch; the next wave starts
when the last row of this one has finished. So no request joins a running wave (no
continuous batching) and there is no prefix cache. The KV cache budget is `kv_cache_gib` on
either device: a wave is admitted only when its padded prompts plus every row's max_tokens fit.

Placement: every linear layer either stays on the GPU or becomes a SplitLinear at its alpha*,
filling the GPU memory left beside the KV cache, the non-linear weights and a reserve
(blend/hetegen/cost.weight_budget_bytes). Without CUDA it runs on the CPU: the split layers'
"GPU part" runs on the CPU too (what CI tests), from a nominal profile that only decides the
split. Sampling: see blend/engines/token_sampling.py for what is and is not honoured.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from blend.cost.offload.hardware_profile import HeteGenProfile
from blend.cost.offload.layer_costs import DEFAULT_RESERVE_BYTES
from blend.cost.offload.placement import Placement, place
from blend.engines.base import (
    EngineConfig,
    EngineOutput,
    EngineRequest,
    EngineState,
    EngineStats,
    Feed,
)
from blend.engines.loop import feed_loop, utc_now
from blend.engines.settings import EngineSettings, hetegen_default_settings
from blend.engines.token_sampling import TokenSampler
from blend.engines.tokenize import model_max_len

GIB = 2**30
BLOCK_SIZE = 16  # tokens per KV block as reported in EngineState (the cache is not paged)

# On a CPU-only machine the "GPU part" runs on the CPU too: a nominal profile (a faster
# "GPU", copies at memory speed) that keeps some layers whole and splits the rest. It decides
# only the split, never a claim about speed.
CPU_NOMINAL_PROFILE = HeteGenProfile(
    name="cpu-nominal",
    cpu_weights_per_s={1: 2e9},
    h2d_bytes_s=20e9,
    gpu_weights_per_s={1: 1e10},
    source="nominal: no CUDA, both parts on the CPU",
)

_DTYPES = {"float32": "float32", "float": "float32", "float16": "float16", "half": "float16"}
_DTYPES |= {"bfloat16": "bfloat16"}


@dataclass(slots=True)
class _Job:
    """A request in the engine: waiting, or a row of the running wave."""

    request: EngineRequest
    started_at: datetime
    sampler: TokenSampler
    tokens: list[int] = field(default_factory=list)
    text: str | None = None  # set when a stop string cut it
    finish_reason: str | None = None

    @property
    def kv_tokens(self) -> int:
        """KV entries the request may need at most (prompt + max_tokens)."""
        return len(self.request.prompt_token_ids) + self.sampler.max_tokens


@dataclass(slots=True)
class _Wave:
    """The rows being decoded together and their transformers cache."""

    jobs: list[_Job]
    cache: Any
    mask: Any  # [rows, tokens so far] attention mask (0: left padding)
    positions: Any  # [rows] position of each row's last token
    next_tokens: Any  # [rows, 1] the tokens the next step feeds


class HeteGenEngine:
    """A started HeteGen engine (the model loaded and placed); `close()` frees it."""

    name = "hetegen"

    def __init__(self, config: EngineConfig, profile: HeteGenProfile | None = None) -> None:
        started = time.perf_counter()
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.busy_seconds = 0.0
        self.version = f"transformers-{transformers.__version__}"
        self._torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = _torch_dtype(config.dtype, self.device.type, torch)
        model = AutoModelForCausalLM.from_pretrained(str(config.model_dir), dtype=dtype)
        self._tokenizer: Any = AutoTokenizer.from_pretrained(str(config.model_dir))
        self.max_model_len = min(
            config.max_model_len or model_max_len(config.model_dir),
            model_max_len(config.model_dir),
        )
        default = hetegen_default_settings(self.max_model_len)
        self.settings = EngineSettings(
            max_num_batched_tokens=config.max_num_batched_tokens or default.max_num_batched_tokens,
            max_num_seqs=config.max_num_seqs or default.max_num_seqs,
            chunked_prefill=False,
        )
        kv_per_token = _kv_bytes_per_token(model.config, torch.tensor([], dtype=dtype))
        kv_bytes = int(config.kv_cache_gib * GIB)
        self._kv_capacity = kv_bytes // kv_per_token
        if self._kv_capacity < 2:
            raise ValueError(
                f"kv_cache_gib {config.kv_cache_gib} holds {self._kv_capacity} tokens of KV "
                f"({kv_per_token} bytes a token): too small"
            )
        self.profile = profile or self._profile(config)
        self.placement = self._place(model, kv_bytes)
        from blend.hetegen.apply import apply_placement

        # on a GPU the CPU parts compute in the dtype the profile measured (bfloat16 by
        # default: CPUs run float16 GEMMs far slower); on the CPU everything stays exact
        cpu_dtype = getattr(torch, self.profile.cpu_dtype) if self.device.type == "cuda" else None
        self._model: Any = apply_placement(model, self.placement, self.device, cpu_dtype).eval()
        self._eos_ids = _eos_ids(self._model, self._tokenizer)
        pad = self._tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else min(self._eos_ids, default=0))
        self._generator = torch.Generator().manual_seed(config.seed)
        self._waiting: deque[_Job] = deque()
        self._wave: _Wave | None = None
        self._generated: dict[str, int] = {}
        self._steps = 0
        self.start_seconds = time.perf_counter() - started

    # --- start ---------------------------------------------------------------------------

    def _profile(self, config: EngineConfig) -> HeteGenProfile:
        if config.hetegen_profile:
            return HeteGenProfile.load(Path(config.hetegen_profile))
        if self.device.type != "cuda":
            return CPU_NOMINAL_PROFILE
        from blend.cost.model import model_spec_from_dir
        from blend.hetegen.profiler import ProfileOptions, measure_profile

        options = ProfileOptions(batches=(1, 8, 32), cpu_budget_s=2.0, gpu_budget_s=2.0)
        return measure_profile(model_spec_from_dir(config.model_dir), options, "engine-start")

    def _place(self, model: Any, kv_bytes: int) -> Placement:
        """Fill the GPU memory left beside the KV cache, the other weights and a reserve."""
        from blend.hetegen.apply import model_linear_shapes

        shapes = model_linear_shapes(model)
        if self.config.hetegen_weight_gib is not None:
            budget = int(self.config.hetegen_weight_gib * GIB)
        elif self.device.type == "cuda":
            free, _ = self._torch.cuda.mem_get_info(self.device)
            all_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
            non_linear = all_bytes - sum(s.weight_bytes for s in shapes)
            budget = int(
                free * self.config.gpu_memory_utilization
                - kv_bytes
                - non_linear
                - DEFAULT_RESERVE_BYTES
            )
            if budget < 0:
                raise ValueError(
                    f"the GPU's free memory ({free / GIB:.1f} GiB x "
                    f"{self.config.gpu_memory_utilization}) does not hold the KV cache "
                    f"({kv_bytes / GIB:.1f} GiB), the non-linear weights and the reserve"
                )
        else:  # nothing to save on the CPU: keep half the linear weights "resident"
            budget = sum(s.weight_bytes for s in shapes) // 2
        batch = min(self.settings.max_num_seqs, 32)
        return place(shapes, budget, self.profile, batch)

    @property
    def params(self) -> dict[str, Any]:
        """What the run's lineage records besides the config: device, profile, placement."""
        layers = self.placement.layers
        offloaded = [layer for layer in layers if not layer.resident]
        offloaded_bytes = sum(layer.weight_bytes for layer in offloaded)
        mean_alpha = (
            sum(layer.alpha * layer.weight_bytes for layer in offloaded) / offloaded_bytes
            if offloaded_bytes
            else 0.0
        )
        return {
            "hetegen_device": self.device.type,
            "hetegen_profile_name": self.profile.name,
            "hetegen_placement": {
                "batch": self.placement.batch,
                "weight_budget_gib": round(self.placement.gpu_budget_bytes / GIB, 4),
                "resident_layers": len(layers) - len(offloaded),
                "offloaded_layers": len(offloaded),
                "resident_gib": round(self.placement.resident_bytes / GIB, 4),
                "offloaded_gib": round(offloaded_bytes / GIB, 4),
                "mean_alpha": round(mean_alpha, 4),
                "predicted_linear_ms": round(self.placement.time_s * 1e3, 4),
            },
            "kv_capacity_tokens": self._kv_capacity,
        }

    # --- the engine protocol -------------------------------------------------------------

    def state(self) -> EngineState:
        wave = self._wave
        rows = len(wave.jobs) if wave is not None else 0
        used = rows * int(wave.mask.shape[1]) if wave is not None else 0
        return EngineState(
            step=self._steps,
            num_running=rows,
            num_waiting=len(self._waiting),
            kv_blocks_used=math.ceil(used / BLOCK_SIZE),
            kv_blocks_total=self._kv_capacity // BLOCK_SIZE,
            block_size=BLOCK_SIZE,
            max_num_seqs=self.settings.max_num_seqs,
            max_num_batched_tokens=self.settings.max_num_batched_tokens,
            generated=self._generated,
        )

    def generate(self, feed: Feed) -> Iterator[list[EngineOutput]]:
        return feed_loop(self, feed)

    def admit(self, request: EngineRequest, started_at: datetime) -> str | None:
        try:
            job = self._job(request, started_at)
        except ValueError as exc:
            return str(exc)
        self._waiting.append(job)
        self._generated[request.request_id] = 0
        return None

    def has_work(self) -> bool:
        return self._wave is not None or bool(self._waiting)

    def step(self) -> list[EngineOutput]:
        """Decode the running wave one token, or prefill the next one."""
        started = time.perf_counter()
        with self._torch.inference_mode():
            done = self._decode() if self._wave is not None else self._prefill()
        self.busy_seconds += time.perf_counter() - started
        self._steps += 1
        return done

    def stats(self) -> EngineStats:
        return EngineStats(prefix_cache_queries=0, prefix_cache_hits=0)  # no prefix cache

    def close(self) -> None:
        self._wave = None
        self._waiting.clear()
        self._model = None  # frees the weights (and the split layers' pinned memory)
        if getattr(self, "device", None) is not None and self.device.type == "cuda":
            self._torch.cuda.empty_cache()

    # --- requests ------------------------------------------------------------------------

    def _job(self, request: EngineRequest, started_at: datetime) -> _Job:
        """A waiting job, or ValueError saying why the request cannot run at all."""
        n_prompt = len(request.prompt_token_ids)
        if n_prompt == 0:
            raise ValueError("empty prompt: 0 tokens")
        if n_prompt + 1 > self.max_model_len:
            raise ValueError(
                f"prompt too long: {n_prompt} tokens leave no room for output within "
                f"max_model_len {self.max_model_len}"
            )
        sampler = TokenSampler.from_sampling(
            request.sampling, request.prompt_token_ids, self.max_model_len - n_prompt
        )
        job = _Job(request, started_at, sampler)
        if job.kv_tokens > self._kv_capacity:
            raise ValueError(
                f"needs {job.kv_tokens} tokens of KV cache (prompt + max_tokens), the cache "
                f"holds {self._kv_capacity} (kv_cache_gib {self.config.kv_cache_gib})"
            )
        return job

    def _admit(self) -> list[_Job]:
        """The next wave: waiting jobs in order while the padded prompts fit the token
        budget and the padded KV of every row (longest prompt + largest max_tokens) fits
        the cache; always at least one."""
        wave: list[_Job] = []
        longest_prompt = most_new = 0
        while self._waiting and len(wave) < self.settings.max_num_seqs:
            job = self._waiting[0]
            prompt = max(longest_prompt, len(job.request.prompt_token_ids))
            new = max(most_new, job.sampler.max_tokens)
            rows = len(wave) + 1
            over_budget = rows * prompt > self.settings.max_num_batched_tokens
            over_kv = rows * (prompt + new) > self._kv_capacity
            if wave and (over_budget or over_kv):
                break
            wave.append(self._waiting.popleft())
            longest_prompt, most_new = prompt, new
        return wave

    # --- steps ---------------------------------------------------------------------------

    def _prefill(self) -> list[EngineOutput]:
        torch = self._torch
        jobs = self._admit()
        width = max(len(job.request.prompt_token_ids) for job in jobs)
        ids = torch.full((len(jobs), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for row, job in enumerate(jobs):
            prompt = job.request.prompt_token_ids
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        output = self._model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=1,
        )
        self._wave = _Wave(jobs, output.past_key_values, mask, positions[:, -1], None)
        return self._advance(output.logits[:, -1, :])

    def _decode(self) -> list[EngineOutput]:
        torch = self._torch
        wave = self._wave
        assert wave is not None
        rows = len(wave.jobs)
        wave.mask = torch.cat([wave.mask, torch.ones((rows, 1), dtype=torch.long)], dim=1)
        wave.positions = wave.positions + 1
        output = self._model(
            input_ids=wave.next_tokens.to(self.device),
            attention_mask=wave.mask.to(self.device),
            position_ids=wave.positions.unsqueeze(1).to(self.device),
            past_key_values=wave.cache,
            use_cache=True,
        )
        wave.cache = output.past_key_values
        return self._advance(output.logits[:, -1, :])

    def _advance(self, logits: Any) -> list[EngineOutput]:
        """Choose every row's next token; finish and drop the rows that are done."""
        torch = self._torch
        wave = self._wave
        assert wave is not None
        logits = logits.float().cpu()
        argmax = torch.argmax(logits, dim=-1)
        tokens = []
        for row, job in enumerate(wave.jobs):
            sampler = job.sampler
            if sampler.plain:
                token = int(argmax[row])
            else:
                token = sampler.choose(logits[row], len(job.tokens), self._eos_ids, self._generator)
            tokens.append(token)
            self._append(job, token)
        finished = [job for job in wave.jobs if job.finish_reason is not None]
        outputs = [self._output(job) for job in finished]
        keep = [row for row, job in enumerate(wave.jobs) if job.finish_reason is None]
        if not keep:
            self._wave = None
            return outputs
        if len(keep) < len(wave.jobs):
            wave.cache.batch_select_indices(torch.tensor(keep, device=self.device))
            wave.mask = wave.mask[keep]
            wave.positions = wave.positions[keep]
            wave.jobs = [wave.jobs[row] for row in keep]
        wave.next_tokens = torch.tensor([[tokens[row]] for row in keep], dtype=torch.long)
        return outputs

    def _append(self, job: _Job, token: int) -> None:
        job.tokens.append(token)
        job.sampler.record(token)
        self._generated[job.request.request_id] = len(job.tokens)
        if token in self._eos_ids:  # before min_tokens the sampler masks them
            job.finish_reason = "stop"
        if job.sampler.stop:
            text = self._tokenizer.decode(job.tokens, skip_special_tokens=True)
            cut = job.sampler.stop_cut(text)
            if cut is not None:
                job.text = text[:cut]
                job.finish_reason = "stop"
        if job.finish_reason is None and len(job.tokens) >= job.sampler.max_tokens:
            job.finish_reason = "length"

    def _output(self, job: _Job) -> EngineOutput:
        self._generated.pop(job.request.request_id, None)
        text = job.text
        if text is None:
            text = self._tokenizer.decode(job.tokens, skip_special_tokens=True)
        return EngineOutput(
            request_id=job.request.request_id,
            output_text=text,
            output_token_ids=list(job.tokens),
            finish_reason=job.finish_reason or "length",
            n_prompt_tokens=len(job.request.prompt_token_ids),
            n_cached_tokens=0,
            error=None,
            started_at=job.started_at,
            finished_at=utc_now(),
        )


def _torch_dtype(name: str, device_type: str, torch: Any) -> Any:
    """The weights' dtype: `auto` is float32 on the CPU (exact, and what CI compares with),
    float16 on a GPU."""
    if name == "auto":
        return torch.float32 if device_type == "cpu" else torch.float16
    if name not in _DTYPES:
        raise ValueError(f"EngineConfig.dtype {name!r}: hetegen takes auto, {sorted(_DTYPES)}")
    return getattr(torch, _DTYPES[name])


def _kv_bytes_per_token(config: Any, sample: Any) -> int:
    """K and V of every layer for one token (bytes)."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return int(2 * config.num_hidden_layers * heads * head_dim * sample.element_size())


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return frozenset(ids)
