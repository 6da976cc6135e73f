"""Workload families draw valid, seeded, differently shaped workloads
(bench/workloads/families.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.workloads.families import (
    CHAT_REASONING_KINDS,
    DOLLY_CLASSES,
    FAMILIES,
    MAIN_MIX_MAX_TOKENS,
    DollyFamily,
    FamilyInstance,
    WorkloadFamily,
    draw_instance,
    family_stats,
)
from bench.workloads.generators import VOCAB_HIGH, VOCAB_LOW

N = 600  # requests in the generic checks
NAMES = sorted(FAMILIES)


def _outputs(instance: FamilyInstance) -> np.ndarray:
    return np.array([r.output_len for r in instance.workload.requests], dtype=np.float64)


def _prompt_lens(instance: FamilyInstance) -> np.ndarray:
    return np.array([len(r.prompt_token_ids) for r in instance.workload.requests])


def test_registry_has_the_families() -> None:
    assert set(NAMES) >= {
        "dolly",
        "fewshot-eval",
        "chat-reasoning",
        "heavy-tail",
        "main-mix",
        "random",
        "fewshot-generation",
        "bimodal",
        "rare-long",
    }
    for name, family in FAMILIES.items():
        assert isinstance(family, WorkloadFamily)
        assert family.name == name
        assert family.description and "\n" not in family.description


@pytest.mark.parametrize("name", NAMES)
def test_instances_are_pure_in_n_and_seed(name: str) -> None:
    a, b = draw_instance(name, N, 3), draw_instance(name, N, 3)
    assert a.params == b.params and a.name == b.name and a.description == b.description
    assert a.workload.max_tokens == b.workload.max_tokens
    for ra, rb in zip(a.workload.requests, b.workload.requests, strict=True):
        assert ra.request_id == rb.request_id and ra.output_len == rb.output_len
        assert np.array_equal(ra.prompt_token_ids, rb.prompt_token_ids)


@pytest.mark.parametrize("name", NAMES)
def test_seeds_draw_different_shapes(name: str) -> None:
    params = [draw_instance(name, N, seed).params for seed in range(3)]
    assert params[0] != params[1] and params[1] != params[2] and params[0] != params[2]


@pytest.mark.parametrize("name", sorted(set(NAMES) - {"fewshot-eval"}))
def test_shape_does_not_depend_on_n(name: str) -> None:
    assert draw_instance(name, 200, 5).params == draw_instance(name, 900, 5).params


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_every_request_is_valid(name: str, seed: int) -> None:
    instance = draw_instance(name, N, seed)
    requests, limits = instance.workload.requests, instance.workload.max_tokens
    assert instance.family == name and instance.name == f"{name}-n{N}-s{seed}"
    if name == "main-mix":
        assert len(requests) == pytest.approx(N, abs=3)
    else:
        assert len(requests) == N
    assert len(limits) == len(requests)
    assert len({r.request_id for r in requests}) == len(requests)
    for r, limit in zip(requests, limits, strict=True):
        prompt = r.prompt_token_ids
        assert isinstance(prompt, np.ndarray) and prompt.dtype == np.int32
        assert len(prompt) >= 1 and prompt.min() >= 0 and prompt.max() < VOCAB_HIGH
        assert prompt[-1] >= VOCAB_LOW  # every prompt ends in a unique body
        assert limit is not None and 1 <= r.output_len <= limit


def test_bad_arguments_are_named() -> None:
    with pytest.raises(KeyError, match=r"known: .*chat-reasoning"):
        draw_instance("nope", 10, 0)
    with pytest.raises(ValueError, match="seed >= 0"):
        draw_instance("dolly", 10, -1)
    with pytest.raises(ValueError, match="n >= 1"):
        draw_instance("random", 0, 0)


def test_dolly_class_means_match_the_targets() -> None:
    family = DollyFamily(weights=(1.0,) * len(DOLLY_CLASSES))
    for seed in (0, 1):
        instance = family.instance(6000, seed)
        assert instance.params["class_weights"] == [0.125] * 8
        kind = np.array([r.request_id.split("-")[1] for r in instance.workload.requests])
        prompt = _prompt_lens(instance) - instance.params["system_prompt_tokens"]
        output = _outputs(instance)
        for name, (_, prompt_mean, output_mean, _) in DOLLY_CLASSES.items():
            mask = kind == name
            assert mask.sum() == 750
            assert prompt[mask].mean() == pytest.approx(prompt_mean, rel=0.15), name
            assert output[mask].mean() == pytest.approx(output_mean, rel=0.15), name


def test_dolly_weights_vary_by_seed() -> None:
    weights = np.array([draw_instance("dolly", 100, s).params["class_weights"] for s in range(5)])
    assert weights.shape == (5, 8) and np.allclose(weights.sum(axis=1), 1.0, atol=1e-3)
    assert weights.std(axis=0).min() > 0.005


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fewshot_eval_shares_its_prefixes(seed: int) -> None:
    instance = draw_instance("fewshot-eval", 1500, seed)
    stats = family_stats(instance)
    assert stats.sharing >= 0.4
    assert stats.mean_prompt_tokens < 2500
    output = _outputs(instance)
    limits = np.array(instance.workload.max_tokens)
    assert set(limits.tolist()) == {16, 1024}  # evaluation and generation tasks both present
    assert output[limits == 16].max() <= 8
    assert output[limits == 1024].min() >= 100 and output[limits == 1024].max() <= 1000


@pytest.mark.parametrize("seed", range(5))
def test_heavy_tail_outputs_are_heavy_tailed(seed: int) -> None:
    instance = draw_instance("heavy-tail", 3000, seed)
    output = _outputs(instance)
    assert output.std() / output.mean() > 1.5
    assert 100 <= output.mean() <= 700
    assert family_stats(instance).sharing < 0.2


def _kinds(instance: FamilyInstance) -> np.ndarray:
    return np.array([r.request_id.rsplit("-", 2)[1] for r in instance.workload.requests])


@pytest.mark.parametrize("seed", range(4))
def test_fewshot_generation_puts_long_generations_behind_long_shared_contexts(seed: int) -> None:
    instance = draw_instance("fewshot-generation", 2000, seed)
    kind = _kinds(instance)
    gen = np.char.startswith(kind, "gen")
    assert gen.any() and (~gen).any()
    output = _outputs(instance)
    assert np.median(output[gen]) > 10 * np.median(output[~gen])
    assert output[gen].max() > 1000
    assert family_stats(instance).sharing > 0.8  # contexts of 800-4000 tokens shared
    assert _prompt_lens(instance).min() > 800
    assert set(np.array(instance.workload.max_tokens)[gen].tolist()) == {16384}


@pytest.mark.parametrize("seed", range(4))
def test_bimodal_groups_mix_short_and_long_answers(seed: int) -> None:
    """Inside one prefix group (one instruction), short and long outputs both occur: the
    group's mean says little about any of its requests."""
    instance = draw_instance("bimodal", 2000, seed)
    kind = _kinds(instance)
    group = np.array([k.removesuffix("short").removesuffix("long") for k in kind])
    output = _outputs(instance)
    mixed = 0
    for g in np.unique(group):
        lengths = output[group == g]
        if (lengths <= 200).any() and (lengths >= 1000).any():
            mixed += 1
    assert mixed >= max(1, len(np.unique(group)) // 2)


@pytest.mark.parametrize("seed", range(4))
def test_rare_long_is_short_but_for_a_rare_very_long_tail(seed: int) -> None:
    instance = draw_instance("rare-long", 5000, seed)
    output = _outputs(instance)
    long = output >= 4000
    assert 0 < long.mean() <= 0.03
    assert np.median(output) < 150
    assert output.max() <= 16384


@pytest.mark.parametrize("seed", range(4))
def test_chat_reasoning_has_all_three_kinds(seed: int) -> None:
    instance = draw_instance("chat-reasoning", 1000, seed)
    kind = np.array([r.request_id.split("-")[2] for r in instance.workload.requests])
    assert set(kind.tolist()) == set(CHAT_REASONING_KINDS)
    output = _outputs(instance)
    assert (output > 2000).any()
    assert output[kind == "summarize"].min() >= 100 and output[kind == "summarize"].max() <= 400
    assert output[kind == "reason"].mean() > 1500
    prompt = _prompt_lens(instance)
    assert prompt[kind == "summarize"].min() >= 1000


def test_main_mix_hits_its_drawn_targets() -> None:
    for seed in (0, 1):
        instance = draw_instance("main-mix", 4000, seed)
        rho, sharing = instance.params["rho"], instance.params["sharing"]
        assert 0.8 <= rho <= 1.4 and 0.05 <= sharing <= 0.45
        stats = family_stats(instance)
        assert stats.rho == pytest.approx(rho, rel=0.03)
        assert stats.sharing == pytest.approx(sharing, abs=0.015)
        for r, limit in zip(instance.workload.requests, instance.workload.max_tokens, strict=True):
            assert limit == MAIN_MIX_MAX_TOKENS[r.request_id.split("-")[2]]


def test_random_family_spans_both_sides_of_rho_one() -> None:
    instances = [draw_instance("random", 300, seed) for seed in range(20)]
    rhos = [family_stats(i).rho for i in instances]
    assert min(rhos) < 1.0 < max(rhos)
    assert {i.params["n_components"] for i in instances} >= {2, 5}
    for instance in instances:
        limits = instance.params["max_tokens"]
        assert all(16 <= m <= 32768 and m & (m - 1) == 0 for m in limits)
    assert max(family_stats(i).sharing for i in instances) > 0.3


def test_family_stats_counts_the_requests() -> None:
    stats = family_stats(draw_instance("dolly", 250, 0))
    assert stats.n_requests == 250 and stats.mean_output_tokens > 0 and stats.rho > 0
