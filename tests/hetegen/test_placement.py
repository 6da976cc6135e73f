from __future__ import annotations

import pytest

from blend.cost.model import load_model_spec
from blend.cost.offload.hardware_profile import HeteGenProfile
from blend.cost.offload.placement import balanced_alpha, offloaded_layer, place, placement_table
from blend.cost.offload.shapes import LinearShape, linear_shapes


def test_llama_shapes_add_up_to_the_spec() -> None:
    spec = load_model_spec("llama-3.1-8b")
    shapes = linear_shapes(spec)
    assert len(shapes) == 32 * 7 + 1
    assert shapes[1].name == "layers.0.k_proj" and shapes[1].out_features == 1024
    embeddings = 2 * spec.vocab_size * spec.hidden_size  # input table and lm_head
    counted = sum(s.n_weights for s in shapes) + embeddings - shapes[-1].n_weights
    assert counted == pytest.approx(spec.n_params, rel=0.001)


def test_balanced_alpha_finishes_both_parts_together(profile: HeteGenProfile) -> None:
    shape = LinearShape("w", 1000, 1000)
    layer = offloaded_layer(shape, profile, batch=1)
    # c = 1 ns a weight, g = 1 ns (2 bytes at 2 GB/s) + 0.01 ns: alpha* = 1.01 / 2.01
    assert layer.alpha == pytest.approx(1.01 / 2.01, abs=1e-3)
    assert layer.cpu_s == pytest.approx(layer.transfer_s + layer.gpu_s, rel=0.01)


def test_balanced_alpha_is_the_best_share(profile: HeteGenProfile) -> None:
    shape = LinearShape("w", 64, 4096)
    best = offloaded_layer(shape, profile, batch=8)
    for share in [i / 100 for i in range(101)]:
        assert best.time_s <= offloaded_layer(shape, profile, 8, alpha=share).time_s + 1e-12
    assert balanced_alpha(0.0, 0.0) == 0.0
    assert balanced_alpha(1.0, 3.0) == 0.75


def test_the_budget_is_filled_but_never_exceeded(profile: HeteGenProfile) -> None:
    shapes = [LinearShape(f"l{i}", 100, 100 * (i + 1)) for i in range(5)]  # 20..100 kB
    placement = place(shapes, gpu_budget_bytes=130_000, profile=profile, batch=1)
    assert placement.resident_bytes <= 130_000
    left = 130_000 - placement.resident_bytes
    offloaded = [layer for layer in placement.layers if not layer.resident]
    assert offloaded and all(layer.weight_bytes > left for layer in offloaded)  # none fits
    assert all(layer.alpha > 0 for layer in placement.layers if not layer.resident)
    everything = place(shapes, gpu_budget_bytes=10**9, profile=profile, batch=1)
    assert all(layer.resident for layer in everything.layers)
    assert everything.time_s < placement.time_s


def test_streaming_copies_every_offloaded_weight(profile: HeteGenProfile) -> None:
    shapes = [LinearShape("a", 100, 100), LinearShape("b", 100, 100)]
    streaming = place(shapes, 0, profile, batch=1, fixed_alpha=0.0)
    hetegen = place(shapes, 0, profile, batch=1)
    assert [layer.cpu_s for layer in streaming.layers] == [0.0, 0.0]
    assert streaming.layers[0].transfer_s == pytest.approx(100 * 100 * 2 / 2e9)
    assert hetegen.time_s < streaming.time_s


def test_a_negative_budget_is_refused(profile: HeteGenProfile) -> None:
    with pytest.raises(ValueError, match="KV cache"):
        place([LinearShape("a", 2, 2)], -1, profile, batch=1)


def test_the_table_has_a_row_per_layer(profile: HeteGenProfile) -> None:
    shapes = [LinearShape("a", 100, 100), LinearShape("b", 100, 100)]
    table = placement_table(place(shapes, 20_000, profile, batch=1))
    assert table.row_count == 2
    cells = list(table.columns[2].cells)
    assert cells[0] == "resident" and cells[1].startswith("alpha 0.")
