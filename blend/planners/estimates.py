"""Output-length estimates, where each comes from, and the warm-up sample that informs them.

Invariant: a request's estimate is, in this order of preference,
  1. its own length, when known (`PlanRequest.output_len`: an earlier result of the same
     prompt with the same model and sampling, or the true length in an oracle simulation);
  2. the mean length of the hints (warm-up results, earlier results of the same dataset) in
     its nearest ancestor subtree of the prompt trie that holds any: the deepest shared
     prefix (template, few-shot prefix, conversation) with a measured length;
  3. its max_tokens.
A hint observed while its request was still running is censored (a lower bound): it counts
as the larger of its length so far, the mean of the uncensored hints of its nearest subtree
inside its prefix group that has any, and the mean of their lognormal beyond its length so
far (conditional_mean, cut at its max_tokens: a request still running is one of the long
ones). A request of a prefix group with no finished measurement at all (its requests outlast
most of the warm-up: long generations) is a guess: the scale-free (log-uniform) prior between
its length so far and its max_tokens, taken as the lognormal of the same mean and spread of
log length (log_uniform_guess); the estimates of its group carry that prior's spread, so
admission and the settings search treat them as guesses. A guess stays inside its group:
above the prefix groups, where requests of unmeasured groups take their estimate, such a
hint counts as the tail of what finished there (_AboveGroups).
The warm-up sample (run first, to measure lengths) is drawn among the requests whose prefix
group has no measured length yet, so earlier results shrink it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from blend.planners.arrays import level_order, node_id_type, subtree_sums, subtree_sums_into
from blend.planners.estimate_columns import EstimateSources, GroupKeys
from blend.planners.prompt_tokens import (
    PlanRequests,
    PromptTokens,
    TokenBatches,
    joined,
    prompts_of,
)
from blend.planners.request import EstimateSource, PlanRequest
from blend.planners.tree import CompactTrie, TokenIds, build_compact_trie

MIN_WARMUP = 4  # requests in a warm-up sample at least (fewer only if there are fewer)
MIN_GROUP = 8  # prefix groups this large get at least one warm-up request
WARMUP_FRACTION = 0.01  # share of the unmeasured requests run first (BlendServe uses ~1%)


@dataclass(frozen=True, slots=True)
class LengthHint:
    """An output length measured before planning, for a prompt that is not being planned."""

    prompt_token_ids: TokenIds
    output_len: int  # output tokens
    source: EstimateSource  # WARMUP or HISTORY
    censored: bool = False  # still running when observed: a lower bound
    max_tokens: int | None = None  # the request's output limit (bounds a censored hint)


@dataclass(frozen=True, slots=True)
class HintColumns:
    """Length hints as columns over prompts that are a subset of the requests' own root
    PromptTokens (plan/sorted_requests.py sorts them together), so no token is held."""

    prompts: PromptTokens
    output_len: np.ndarray  # int64 output tokens
    warmup: np.ndarray  # bool: a warm-up result (else an earlier result: HISTORY)
    censored: np.ndarray  # bool: still running when observed (a lower bound)
    max_tokens: np.ndarray  # int64 output limit (bounds a censored hint)

    def __len__(self) -> int:
        return len(self.output_len)


Hints = Sequence[LengthHint] | HintColumns


@dataclass(frozen=True, slots=True)
class OutputEstimates:
    """Per request (index of the planned requests): estimated output tokens and provenance."""

    tokens: np.ndarray  # float64 estimated output tokens (the mean of what it may be)
    source: EstimateSources  # a code a request (a list of sources is taken as one)
    grouped: np.ndarray  # bool: the estimate comes from a prefix subtree below the root
    # the request's top-level prefix group (hash of its shared prefix; a list is taken too)
    group_key: GroupKeys
    # float64 spread of the length around the estimate: the standard deviation of log length
    # among the measurements the estimate comes from (0: a known or an assumed length)
    spread: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # log length of every finished measurement less its prefix group's mean log length: the
    # shape of lengths within a group (bimodal, heavy-tailed), pooled; what the settings
    # search draws lengths from where it has enough of them (not per request)
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # bool: the estimate is a guess, nothing of its group finished (log_uniform_guess)
    guessed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", EstimateSources.of(self.source))
        object.__setattr__(self, "group_key", GroupKeys.of(self.group_key))
        if len(self.spread) != len(self.tokens):
            object.__setattr__(self, "spread", np.zeros(len(self.tokens)))
        if len(self.guessed) != len(self.tokens):
            object.__setattr__(self, "guessed", np.zeros(len(self.tokens), dtype=bool))

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, indices: Sequence[int] | np.ndarray) -> OutputEstimates:
        picked = np.asarray(indices, dtype=np.int64)
        return OutputEstimates(
            tokens=self.tokens[picked],
            source=self.source.subset(picked),
            grouped=self.grouped[picked],
            group_key=self.group_key.subset(picked),
            spread=self.spread[picked],
            residuals=self.residuals,
            guessed=self.guessed[picked],
        )

    def measured(self) -> np.ndarray:
        """bool per request: the estimate rests on a measurement of its own prefix group or of
        itself (what makes a warm-up of that request unnecessary)."""
        own = self.source.is_any(EstimateSource.OWN, EstimateSource.ORACLE)
        return own | self.grouped if len(own) else np.zeros(0, dtype=bool)

    def source_counts(self) -> dict[str, int]:
        """Requests per source, in order of first appearance."""
        return self.source.counts()


def estimate_outputs(requests: Sequence[PlanRequest], hints: Hints = ()) -> OutputEstimates:
    """Estimates for `requests` from their own known lengths and `hints` (module invariant)."""
    n = len(requests)
    prompts = _all_prompts(requests, hints)
    trie = build_compact_trie(prompts)
    if isinstance(requests, PlanRequests):  # columns: no request object made
        own = requests.output_len.astype(np.float64)
    else:
        own = np.fromiter(
            (-1 if r.output_len is None else r.output_len for r in requests), float, n
        )
    hint = _hint_columns(hints)
    levels = level_order(trie.parent)
    keys = _group_keys(trie, levels, n, prompts)
    values = np.concatenate((own, hint.output_len.astype(np.float64)))
    known = values >= 0
    if not known.any():  # nothing measured: every estimate is its max_tokens (what the rule
        # below gives, without its arrays over the trie's nodes: a first plan of 10M prompts)
        return OutputEstimates(
            _max_tokens(requests),
            EstimateSources.filled(n, EstimateSource.MAX_TOKENS),
            np.zeros(n, dtype=bool),
            keys,
            np.zeros(n),
            np.zeros(0),
            np.zeros(n, dtype=bool),
        )
    censored = np.zeros(len(values), dtype=bool)
    censored[n:] = hint.censored
    prior_sigma: np.ndarray | None = None  # no censored hint, no prior
    above = _NONE_ABOVE
    if censored.any():
        values, prior_sigma, above = _censored_values(
            trie, levels, _leaf_of_request(trie), values, known, censored, hint.max_tokens, n
        )
    # first, while no per-request result is held yet: its arrays over the trie's nodes were
    # the re-plan's peak at 10M prompts (the results' arrays beside them, ~0.3 GB)
    residuals = _group_residuals(trie, levels, _log_length(values), known & ~censored)
    nodes, from_subtree, grouped = _from_subtrees(trie, levels, values, known, n, above)
    hint_warmup = np.zeros(len(values), dtype=bool)
    hint_warmup[n:] = hint.warmup
    warm, _ = _subtree_means(trie, levels, hint_warmup.astype(float), known)
    sources = _sources(requests, own, from_subtree, warm[nodes])
    del warm, hint_warmup
    spread, guessed = _spreads(trie, levels, values, known, censored, prior_sigma, nodes, above)
    spread = np.where((own >= 0) | np.isnan(from_subtree), 0.0, spread)
    guessed &= own < 0
    # the estimates last, max_tokens read only now: not beside the arrays over the trie's
    # nodes above (each of these ~80 MB at 10M prompts; the spreads were the peak)
    fallback = np.where(np.isnan(from_subtree), _max_tokens(requests), from_subtree)
    tokens = np.where(own >= 0, own, fallback)
    return OutputEstimates(tokens, sources, grouped, keys, spread, residuals, guessed)


def _max_tokens(requests: Sequence[PlanRequest]) -> np.ndarray:
    """Each request's max_tokens (float64)."""
    if isinstance(requests, PlanRequests):
        return requests.max_tokens.astype(np.float64)
    return np.fromiter((r.max_tokens for r in requests), np.float64, len(requests))


@dataclass(frozen=True, slots=True)
class _AboveGroups:
    """Censored hints of prefix groups where nothing finished, as seen from above their
    groups. Inside its group such a hint holds its guess (log_uniform_guess: what the
    group's requests are estimated by); above it, on the chain of nodes every group hangs
    from, it counts as the tail of what finished there, like a running request of a group
    with finished ones (conditional_mean). A guess near max_tokens in the chain's mean would
    be the estimate of every request with no measurement of its own group: every tenth
    warm-up request of a dataset of unique prompts is still running at the re-plan, each a
    group of its own, and their guesses made the estimate of all the rest 3x the truth."""

    chain: np.ndarray  # node ids: the node whose children are the prefix groups, and above
    guess: np.ndarray  # float64 the value each hint holds (its guess)
    tail: np.ndarray  # float64 what it counts as on the chain

    def correct(
        self, sums: np.ndarray, of: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        """Sums over subtrees of `of`(value) (the value itself if None) made right on the
        chain: each hint's tail there instead of its guess."""
        if len(self.guess):
            tail, guess = (self.tail, self.guess) if of is None else (of(self.tail), of(self.guess))
            sums[self.chain] += float(np.sum(tail - guess))


_NONE_ABOVE = _AboveGroups(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))


def _chain(trie: CompactTrie) -> np.ndarray:
    """The node whose children are the prefix groups (prefix_groups), and its ancestors."""
    groups = prefix_groups(trie)
    node = int(trie.parent[groups[0]]) if len(groups) else 0
    chain = [node]
    while trie.parent[node] >= 0:
        node = int(trie.parent[node])
        chain.append(node)
    return np.asarray(chain, dtype=np.int64)


def _from_subtrees(
    trie: CompactTrie,
    levels: list[np.ndarray],
    values: np.ndarray,
    known: np.ndarray,
    n: int,
    above: _AboveGroups,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per request: the node its estimate comes from (its nearest measured ancestor-or-self,
    the root if none), that node's mean (nan: nothing measured), and whether the node lies in
    a prefix group (what `grouped` says); the arrays over nodes go when it returns."""
    mean, has = _subtree_means(trie, levels, values, known, above)
    nearest, depth_ok = _nearest_measured(trie, levels, has)
    nodes = nearest[_leaf_of_request(trie)[:n]]
    from_subtree = mean[nodes]
    return nodes, from_subtree, depth_ok[nodes] & ~np.isnan(from_subtree)


def _all_prompts(requests: Sequence[PlanRequest], hints: Hints) -> Sequence[TokenIds]:
    """The requests' prompts, then the hints': one subset of their common sorted root where
    both are columns (no token read), else a list; without hints the requests' own (whose
    trie is then built once for the estimates and the plan)."""
    own = prompts_of(requests)
    if not len(hints):
        return own
    if isinstance(hints, HintColumns):
        if isinstance(own, PromptTokens):
            both = joined(own, hints.prompts)
            if both is not None:
                return both
        return [*own, *hints.prompts]
    return [*own, *(h.prompt_token_ids for h in hints)] if hints else own


def _hint_columns(hints: Hints) -> HintColumns:
    """The hints as columns (their prompts are not read here)."""
    if isinstance(hints, HintColumns):
        return hints
    return HintColumns(
        PromptTokens.from_lists([]),
        np.fromiter((h.output_len for h in hints), np.int64, len(hints)),
        np.fromiter((h.source is EstimateSource.WARMUP for h in hints), bool, len(hints)),
        np.fromiter((h.censored for h in hints), bool, len(hints)),
        np.fromiter((h.max_tokens or -1 for h in hints), np.int64, len(hints)),
    )


MIN_FOR_SPREAD = 4  # measurements a subtree needs to give its own spread


def _spreads(
    trie: CompactTrie,
    levels: list[np.ndarray],
    values: np.ndarray,
    known: np.ndarray,
    censored: np.ndarray,
    prior_sigma: np.ndarray | None,
    estimate_nodes: np.ndarray,
    above: _AboveGroups,
) -> tuple[np.ndarray, np.ndarray]:
    """Per request, the spread of its length as far as the planner can tell (the std of log
    length of the predictive distribution):
    - the standard deviation of log length among the measurements below the node its
      estimate comes from (where there are MIN_FOR_SPREAD of them), else the spread pooled
      over every measured prefix group (each measurement against its group's mean);
    - widened by sqrt(1 + 1/k) for a mean of k finished measurements (the predictive spread
      of one more draw when the mean itself is estimated: a well-measured group keeps its
      own spread, a group measured once counts 1.41 times as wide);
    - where nothing below that node finished (only lower bounds: long generations still
      running at the re-plan), the spread of the log-uniform prior between the length seen
      and max_tokens, ln(max_tokens / g) / sqrt(12): the estimate is a guess, and admission
      and the settings search count it as one (the second array: bool, guessed)."""
    moments = _log_moments(trie, levels, values, known, above)
    enough = moments.count[estimate_nodes] >= MIN_FOR_SPREAD
    own, pooled = moments.std[estimate_nodes], moments.pooled
    del moments  # three arrays over the nodes, before the per-request ones below
    spread = np.where(enough, own, pooled)
    del enough, own
    k = _subtree_counts(trie, levels, known & ~censored)[estimate_nodes]
    spread = spread * np.sqrt(1.0 + 1.0 / np.maximum(k, 1.0))
    guessed = np.zeros(len(estimate_nodes), dtype=bool)
    if prior_sigma is not None and (has_prior := ~np.isnan(prior_sigma)).any():
        prior, _ = _subtree_means(trie, levels, np.nan_to_num(prior_sigma), has_prior)
        guessed = (k == 0) & ~np.isnan(prior[estimate_nodes])
        spread = np.where(guessed, prior[estimate_nodes], spread)
    return spread, guessed


@dataclass(frozen=True, slots=True)
class _LogMoments:
    """Per trie node, of the log lengths measured below it: mean, standard deviation and
    count; and the spread pooled over the prefix groups (_pooled_spread)."""

    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray
    pooled: float


def _log_moments(
    trie: CompactTrie,
    levels: list[np.ndarray],
    values: np.ndarray,
    use: np.ndarray,
    above: _AboveGroups = _NONE_ABOVE,
) -> _LogMoments:
    """The moments of the log lengths (`values` at least 1) that `use` marks, per node
    (computed in place: a few arrays over the nodes at a time)."""
    logs = _log_length(values)
    count = _subtree_counts(trie, levels, use)
    has = count > 0
    sums = _subtree_sums_of(trie, levels, logs, use)
    above.correct(sums, _log_length)
    mean_log = _mean_of_sums(sums, count, has)
    # the pooled spread first, before the other array over the nodes exists: its own were
    # the re-plan's peak at 10M prompts
    pooled = _pooled_spread(trie, levels, logs, use, mean_log)
    np.square(logs, out=logs)
    sums = _subtree_sums_of(trie, levels, logs, use)
    above.correct(sums, lambda v: _log_length(v) ** 2)
    std = _mean_of_sums(sums, count, has)
    del has, logs
    for first in range(0, len(std), _NODE_CHUNK):  # the variance, without a mean**2 array
        part = slice(first, first + _NODE_CHUNK)
        std[part] -= mean_log[part] ** 2
    np.nan_to_num(std, copy=False)
    np.maximum(std, 0.0, out=std)
    np.sqrt(std, out=std)
    return _LogMoments(mean_log, std, count, pooled)


def _subtree_counts(trie: CompactTrie, levels: list[np.ndarray], use: np.ndarray) -> np.ndarray:
    """Used leaves (`use`: bool or 0/1 per value) in each subtree (float64, a value per node)."""
    count = np.zeros(trie.num_nodes)
    for leaves, req in _leaf_chunks(trie):
        count[leaves] = use[req]
    return subtree_sums_into(trie.parent, levels, count)


def _pooled_spread(
    trie: CompactTrie,
    levels: list[np.ndarray],
    logs: np.ndarray,
    known: np.ndarray,
    mean_log: np.ndarray | None = None,
) -> float:
    """The standard deviation of log length around each measurement's prefix-group mean,
    pooled over the groups measured twice or more (_group_residuals); where no group was
    measured twice (unique prompts), around the mean of all of them: what varies within a
    group is then not told apart from what varies between groups, and a spread of 0 would
    read every estimate as exact."""
    if known.sum() < 2:
        return 0.0
    residuals = _group_residuals(trie, levels, logs, known, mean_log)
    if len(residuals):
        return float(np.sqrt(np.mean(residuals**2)))
    return float(np.std(logs[known], ddof=1))


def _group_of_nodes(trie: CompactTrie, levels: list[np.ndarray]) -> np.ndarray:
    """Per trie node, the top-level prefix group it lies in (the group's node id; -1 for
    the nodes above every group)."""
    group_of = np.full(trie.num_nodes, -1, dtype=node_id_type(trie.num_nodes))
    groups = prefix_groups(trie)
    group_of[groups] = groups
    for nodes in levels[1:]:
        inherit = nodes[group_of[nodes] < 0]
        group_of[inherit] = group_of[trie.parent[inherit]]
    return group_of


def _group_residuals(
    trie: CompactTrie,
    levels: list[np.ndarray],
    logs: np.ndarray,
    known: np.ndarray,
    mean_log: np.ndarray | None = None,
) -> np.ndarray:
    """Each measurement's log length less its prefix group's mean log length (the shape of
    lengths within a group, pooled over the groups); `mean_log`: the subtree means of `logs`
    over `known` where the caller has them.

    Only groups with two measurements or more count: a group's only measurement is its own
    mean, a residual of 0 that says nothing of the shape (a dataset of unique prompts would
    give nothing but zeros: no spread at all). Each residual of a group of n is scaled by
    sqrt(n / (n - 1)), so their mean square is the pooled variance with one degree of freedom
    spent on each group's mean (Bessel's correction: a group of two under-reads its spread by
    half its variance)."""
    if not known.any():
        return np.zeros(0)
    group_of = _group_of_nodes(trie, levels)
    measured = np.flatnonzero(known)
    group = group_of[_leaf_of_request(trie)[measured]]
    del group_of  # before the means' node arrays: two arrays over the nodes less at once
    if mean_log is None:
        mean_log, _ = _subtree_means(trie, levels, logs, known)
    centre = np.where(group >= 0, mean_log[np.maximum(group, 0)], logs[measured].mean())
    residuals = np.asarray(logs[measured] - centre, dtype=np.float64)
    _, member_of, size = np.unique(group, return_inverse=True, return_counts=True)
    n = size[member_of.reshape(-1)].astype(np.float64)
    keep = n >= 2
    return residuals[keep] * np.sqrt(n[keep] / (n[keep] - 1.0))


def _censored_values(
    trie: CompactTrie,
    levels: list[np.ndarray],
    leaf_of: np.ndarray,
    values: np.ndarray,
    known: np.ndarray,
    censored: np.ndarray,
    hint_max_tokens: np.ndarray,
    n: int,
) -> tuple[np.ndarray, np.ndarray, _AboveGroups]:
    """`values` with each censored hint raised to its estimate (module invariant), per value
    the log-std of the log-uniform prior it was given (nan: none), and the guesses as seen
    from above their groups (_AboveGroups)."""
    finished = known & ~censored
    mean, has = _subtree_means(trie, levels, values, finished)
    moments = _log_moments(trie, levels, values, finished)
    nearest, inside = _nearest_measured(trie, levels, has)
    out = values.copy()
    prior_sigma = np.full(len(values), np.nan)
    guesses: list[float] = []
    tails: list[float] = []
    for k in np.flatnonzero(censored).tolist():
        node = nearest[leaf_of[k]]
        limit = int(hint_max_tokens[k - n])
        cap = float(limit) if limit > 0 else math.inf
        tail = math.nan
        if has[node]:
            # what finished of its group (else around it), as a lognormal: the mean of the
            # part beyond g
            own = moments.count[node] >= MIN_FOR_SPREAD and moments.std[node] > 0
            sigma = float(moments.std[node]) if own else moments.pooled
            beyond = conditional_mean(float(moments.mean[node]), sigma, float(values[k]), cap)
            tail = max(values[k], min(max(mean[node], beyond), cap))
        if has[node] and inside[node]:
            out[k] = tail
            continue
        # nothing of its group finished: somewhere between now and its limit
        low = max(1.0, float(values[k]))
        high = max(low, float(limit if limit > 0 else 3 * values[k]))
        out[k], prior_sigma[k] = log_uniform_guess(low, high)
        if has[node] and inside[leaf_of[k]]:  # a group's guess; above it, the tail
            guesses.append(float(out[k]))
            tails.append(tail)
    if not guesses:
        return out, prior_sigma, _NONE_ABOVE
    return out, prior_sigma, _AboveGroups(_chain(trie), np.asarray(guesses), np.asarray(tails))


def conditional_mean(mu: float, sigma: float, seen: float, limit: float = math.inf) -> float:
    """E[min(L, limit) | L > seen] for a lognormal length L with log-mean mu and log-spread
    sigma, cut at the request's max_tokens `limit`: a request still running at `seen` tokens
    is one of its group's long ones (the finished ones are the short ones: counting it at the
    group's mean would bias the group low), and it stops at its limit (a wide lognormal's
    tail beyond it would count lengths no request can reach)."""
    from scipy.special import ndtr

    if sigma <= 0 or seen <= 0:
        return min(max(seen, math.exp(mu)), max(limit, seen))
    z = (math.log(seen) - mu) / sigma
    survive = float(ndtr(-z))
    if survive < 1e-12 or limit <= seen:
        return seen
    mean = math.exp(mu + sigma * sigma / 2.0)
    total = mean * float(ndtr(sigma - z))  # the integral of L over L > seen
    if math.isfinite(limit):  # the mass beyond the limit stops there
        z_limit = (math.log(limit) - mu) / sigma
        total -= mean * float(ndtr(sigma - z_limit))
        total += limit * float(ndtr(-z_limit))
    return total / survive


def log_uniform_guess(low: float, high: float) -> tuple[float, float]:
    """(mean, sigma) of the lognormal that stands for a length known only to lie in
    [low, high] tokens: the scale-free (log-uniform) prior, matched in the mean and the
    standard deviation of log length, (ln low + ln high) / 2 and ln(high / low) / sqrt(12),
    so that admission and the settings search, which read a length as a lognormal, see the
    prior's shape (its median at the geometric mean, a long upper tail). A uniform prior's
    midpoint would put the weight near the limit: a generation seen at 500 tokens with a
    32,768-token limit would count as 16,634 tokens; this guess is 8,390 (median 4,048)."""
    if high <= low:
        return low, 0.0
    sigma = math.log(high / low) / math.sqrt(12.0)
    return math.sqrt(low * high) * math.exp(sigma * sigma / 2.0), sigma


def _sources(
    requests: Sequence[PlanRequest],
    own: np.ndarray,
    subtree_mean: np.ndarray,
    warmup_share: np.ndarray,
) -> EstimateSources:
    """Per request where its estimate comes from: its own length (and that length's
    source), else its nearest measured subtree (warm-up if any warm-up hint is there, else
    history), else max_tokens."""
    code = EstimateSources.code
    from_tree = np.where(
        warmup_share > 0, code(EstimateSource.WARMUP), code(EstimateSource.HISTORY)
    )
    codes = np.where(np.isnan(subtree_mean), code(EstimateSource.MAX_TOKENS), from_tree)
    # a known length's source (read only where the length is known)
    known: np.ndarray | int
    if isinstance(requests, PlanRequests):
        known = code(requests.known_from)
    else:
        known = EstimateSources.of([r.length_source for r in requests]).codes
    return EstimateSources(np.where(own >= 0, known, codes).astype(np.int8))


def _subtree_means(
    trie: CompactTrie,
    levels: list[np.ndarray],
    values: np.ndarray,
    use: np.ndarray,
    above: _AboveGroups = _NONE_ABOVE,
) -> tuple[np.ndarray, np.ndarray]:
    """(mean of `values` over the used leaves of each subtree (nan where none), has any)."""
    count = _subtree_counts(trie, levels, use)
    has = count > 0
    sums = _subtree_sums_of(trie, levels, values, use)
    above.correct(sums)
    return _mean_of_sums(sums, count, has), has


def _log_length(values: np.ndarray) -> np.ndarray:
    """Log of lengths of at least one token."""
    return np.log(np.maximum(values, 1.0))


def _subtree_sums_of(
    trie: CompactTrie, levels: list[np.ndarray], values: np.ndarray, use: np.ndarray
) -> np.ndarray:
    """Sum of `values` over the used leaves of each subtree (float64, a value per node)."""
    total = np.zeros(trie.num_nodes)
    for leaves, req in _leaf_chunks(trie):
        total[leaves] = np.where(use[req], values[req], 0.0)
    return subtree_sums_into(trie.parent, levels, total)


_NODE_CHUNK = 1 << 20  # nodes filled at a time (the temporaries of a fill stay ~20 MB)


def _leaf_chunks(trie: CompactTrie) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(leaf node ids, their request indices), a chunk at a time: the estimates' peak at 10M
    prompts was a fill of every leaf at once beside three arrays over the nodes."""
    for first in range(0, trie.num_nodes, _NODE_CHUNK):  # no array of every leaf
        part = trie.leaf_request[first : first + _NODE_CHUNK]
        at = np.flatnonzero(part >= 0)
        yield at + first, part[at]


def _mean_of_sums(total: np.ndarray, count: np.ndarray, has: np.ndarray) -> np.ndarray:
    """total / count where `has`, nan elsewhere, in `total`'s array."""
    mean = np.divide(total, count, out=total, where=has)
    mean[~has] = np.nan
    return mean


def _nearest_measured(
    trie: CompactTrie, levels: list[np.ndarray], has: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(per node: its nearest ancestor-or-self with a measurement (the root if none),
    per node: whether it lies below the root's shared chain, i.e. inside a prefix group)."""
    nearest = np.arange(trie.num_nodes, dtype=node_id_type(trie.num_nodes))
    for nodes in levels[1:]:  # top-down: borrow the nearest ancestor's
        missing = nodes[~has[nodes]]
        nearest[missing] = nearest[trie.parent[missing]]
    inside = np.zeros(trie.num_nodes, dtype=bool)
    for group in prefix_groups(trie):
        inside[group] = True
    for nodes in levels[1:]:
        inside[nodes] |= inside[trie.parent[nodes]]
    return nearest, inside


def _leaf_of_request(trie: CompactTrie) -> np.ndarray:
    leaf_of = np.empty(len(trie.lengths), dtype=node_id_type(trie.num_nodes))
    for leaves, req in _leaf_chunks(trie):
        leaf_of[req] = leaves
    return leaf_of


def _group_keys(
    trie: CompactTrie, levels: list[np.ndarray], n: int, prompts: Sequence[TokenIds]
) -> GroupKeys:
    """Per request: a stable key of its top-level prefix group, "<depth>:<hash>" (a hash of
    the group's shared prefix tokens, and their count), the same across runs and datasets.

    The first request of each group spells its prefix; with prompts not held, the ids of
    those requests stream back in batches (at 10M unique prompts nearly every prompt is a
    group of its own: their ids at once held ~5 GB)."""
    group_of = _group_of_nodes(trie, levels)
    node_of = group_of[_leaf_of_request(trie)[:n]]
    del group_of
    nodes, first, inverse = np.unique(node_of, return_index=True, return_inverse=True)
    del node_of
    depths = np.where(nodes >= 0, trie.depth[np.maximum(nodes, 0)], 0)
    digests = bytearray(_prefix_digest(b"") * len(nodes))
    spelled = np.flatnonzero(depths > 0)  # depth 0: the empty prefix's hash, nothing to read
    for picked, tokens in _tokens_in_batches(prompts, first[spelled]):
        heads = spelled[picked]
        for g, depth, ids in zip(heads.tolist(), depths[heads].tolist(), tokens, strict=True):
            prefix = np.asarray(ids[:depth], dtype=">u4").tobytes()
            digests[8 * g : 8 * g + 8] = _prefix_digest(prefix)
    codes = inverse.reshape(-1).astype(np.int32)
    return GroupKeys(codes, _key_names(depths, np.frombuffer(digests, np.uint8)))


def _prefix_digest(prefix: bytes) -> bytes:
    return blake2b(prefix, digest_size=8).digest()


def _tokens_in_batches(prompts: Sequence[TokenIds], indices: np.ndarray) -> TokenBatches:
    """The ids of these prompts a batch at a time (streamed where they are not held)."""
    if isinstance(prompts, PromptTokens):
        yield from prompts.tokens_in_batches(indices)
    else:
        yield np.arange(len(indices)), [prompts[i] for i in indices.tolist()]


_HEX = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), np.uint8).reshape(256, 2)
_NAMES_CHUNK = 1 << 20  # keys formatted at a time


def _key_names(depths: np.ndarray, digests: np.ndarray) -> pa.Array:
    """ "<depth>:<hex digest>" per group as one string array (no Python string a group)."""
    chunks = []
    for first in range(0, len(depths), _NAMES_CHUNK):
        part = slice(first, min(len(depths), first + _NAMES_CHUNK))
        m = part.stop - part.start
        hexed = _HEX[digests[8 * part.start : 8 * part.stop]].tobytes()  # 16 characters each
        offsets = np.arange(m + 1, dtype=np.int32) * 16
        hex_text = pa.Array.from_buffers(
            pa.string(), m, [None, pa.py_buffer(offsets), pa.py_buffer(hexed)]
        )
        depth_text = pc.cast(pa.array(depths[part], pa.int64()), pa.string())
        chunks.append(pc.binary_join_element_wise(depth_text, hex_text, ":"))
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


def prefix_groups(trie: CompactTrie) -> np.ndarray:
    """Top-level prefix groups: children of the first node below the root that branches
    (a chain shared by every prompt, like a chat template, is looked through)."""
    parent = trie.parent
    node = 0
    # a node's children by a scan each step, not a count of every node's children (an array
    # over the nodes; the chain is a node or two long)
    while len(children := np.flatnonzero(parent == node)) == 1:
        if trie.leaf_request[children[0]] >= 0:
            break
        node = int(children[0])
    return np.flatnonzero(parent == node)


def group_members(trie: CompactTrie, num_leaves: np.ndarray, node: int) -> np.ndarray:
    """Request indices under `node` in token (DFS) order (the trie as built, before splits)."""
    start = int(trie.first_rank[node])
    return trie.sorted_order[start : start + int(num_leaves[node])]


def select_warmup(
    trie: CompactTrie,
    measured: np.ndarray,
    warmup_fraction: float,
    seed: int,
    min_warmup: int = MIN_WARMUP,
    min_group: int = MIN_GROUP,
) -> np.ndarray:
    """Request indices of the warm-up sample, in the order they run (seeded, no repeats).

    Drawn among the requests not `measured` (bool per request): a uniform sample of
    warmup_fraction of them (at least min_warmup), plus one random unmeasured request of
    every prefix group of >= min_group requests that holds no measured request and that the
    uniform sample missed (the largest groups first, at most as many as the uniform sample):
    a rare kind of request (a few long-output prompts among thousands) still gets measured.
    """
    if not 0.0 <= warmup_fraction <= 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1], got {warmup_fraction}")
    candidates = np.flatnonzero(~measured)
    if warmup_fraction == 0.0 or candidates.size == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    k = min(candidates.size, max(min_warmup, math.ceil(warmup_fraction * candidates.size)))
    sample = rng.choice(candidates, size=k, replace=False).astype(np.int64)
    sampled = np.zeros(len(measured), dtype=bool)
    sampled[sample] = True
    levels = level_order(trie.parent)
    num_leaves = subtree_sums(trie.parent, levels, (trie.leaf_request >= 0).astype(np.float64))
    extra: list[int] = []
    groups = prefix_groups(trie)
    for group in groups[np.argsort(-num_leaves[groups], kind="stable")]:  # largest first
        if num_leaves[group] < min_group or len(extra) >= k:  # at most doubles the sample
            break
        members = group_members(trie, num_leaves, int(group))
        if not (sampled[members] | measured[members]).any():
            extra.append(int(members[rng.integers(len(members))]))
    return np.concatenate((sample, np.asarray(extra, dtype=np.int64)))
