"""Request classes: the k rule, k-means on (log P, log D), numbering, errors."""

from __future__ import annotations

import numpy as np
import pytest

from blend.control.classes import MAX_CLASSES, assign_classes, choose_k, cluster_requests

GROUPS = [(50.0, 800.0), (1200.0, 100.0), (100.0, 100.0)]  # (P, D) of three kinds


def grouped(n_per: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Requests of the three GROUPS, lengths within +-10% of their kind's, shuffled."""
    rng = np.random.default_rng(seed)
    kind = rng.permutation(np.repeat(np.arange(len(GROUPS)), n_per))
    p = np.array([GROUPS[k][0] for k in kind]) * rng.uniform(0.9, 1.1, len(kind))
    d = np.array([GROUPS[k][1] for k in kind]) * rng.uniform(0.9, 1.1, len(kind))
    return p, d, kind


def test_k_rule() -> None:
    assert [choose_k(n) for n in (0, 1, 2, 8, 18, 50, 10_000)] == [0, 1, 1, 2, 3, 5, MAX_CLASSES]
    assert choose_k(10_000, n_distinct=3) == 3


def test_separated_kinds_become_one_class_each() -> None:
    p, d, kind = grouped()
    clustering = cluster_requests(p, d, k=3)
    # every kind lands in exactly one class, every class holds exactly one kind
    pairs = {(int(k), int(c)) for k, c in zip(kind, clustering.labels, strict=True)}
    assert len(pairs) == 3 and len({c for _, c in pairs}) == 3
    for c in clustering.classes:
        members = clustering.labels == c.class_id
        assert c.n_requests == members.sum() == 60
        assert c.prompt_tokens == pytest.approx(p[members].mean())
        assert c.output_tokens == pytest.approx(d[members].mean())
    ratios = [c.output_tokens / c.prompt_tokens for c in clustering.classes]
    assert ratios == sorted(ratios)  # numbered prefill-heavy first
    assert [c.class_id for c in clustering.classes] == [0, 1, 2]


def test_seeded_and_deterministic() -> None:
    p, d, _ = grouped(seed=3)
    a = cluster_requests(p, d, seed=5)
    b = cluster_requests(p, d, seed=5)
    assert np.array_equal(a.labels, b.labels) and a.classes == b.classes
    assert len(a.classes) == choose_k(len(p))


def test_fewer_distinct_points_than_k() -> None:
    p = np.array([10.0, 10.0, 10.0, 500.0])
    d = np.array([5.0, 5.0, 5.0, 5.0])
    clustering = cluster_requests(p, d, k=6)
    assert [c.n_requests for c in clustering.classes] == [1, 3]
    assert cluster_requests(np.full(5, 7.0), np.full(5, 3.0)).classes[0].n_requests == 5
    assert cluster_requests(np.zeros(0), np.zeros(0)).classes == ()


def test_assign_classes_picks_the_nearest_in_log_space() -> None:
    p, d, _ = grouped()
    clustering = cluster_requests(p, d, k=3)
    assert np.array_equal(assign_classes(clustering.classes, p, d), clustering.labels)


@pytest.mark.parametrize(
    ("p", "d", "match"),
    [
        (np.ones(3), np.ones(2), "same length"),
        (np.array([1.0, -2.0]), np.ones(2), ">= 0"),
        (np.array([1.0, np.nan]), np.ones(2), "finite"),
    ],
)
def test_bad_input_is_refused(p: np.ndarray, d: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cluster_requests(p, d)
