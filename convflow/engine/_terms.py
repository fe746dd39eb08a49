"""Separable terms: a kernel as a short sum of outer products, and the 1-D passes that run it.

A kernel equal to ``sum_t coef_t * outer(v_t[0], ..., v_t[d-1])`` runs as
1-D passes, one per axis and term, instead of one d-dimensional sum.  The
terms come from the kernel object (`convflow.kernels.Kernel.terms`: the
identity plus a Gaussian for unsharp, a Gaussian derivative per axis for
LoG, two Gaussians for DoG), checked against its weights, or are found from
the weights alone: the rank-one test in any dimension, the SVD in 2-D and a
truncated higher-order SVD (a Tucker decomposition) in 3-D and more.

`plan_sum` says how the terms share work, so that a sum costs little more
than its distinct passes:

* every vector is trimmed to its nonzero weights, so a shorter Gaussian in
  a longer kernel costs its own taps, and a single weight (the identity, a
  shift) is no pass at all, only a view of the block, moved;
* terms that agree on their first axes share those passes (the Gaussian
  smoothing along the axis that two LoG terms leave underived);
* terms that agree on the last axis are summed before it, so it runs once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# A kernel is taken as a sum of outer products when dropping the rest changes
# it by at most this much, relative, in the L1 norm: the output then moves by
# at most 1e-10 * sum|k| * max|x|, ten times inside the float64 tolerance.
# It holds for every way terms are found or given: the 2-D SVD, the 3-D and
# higher Tucker decomposition below, and terms a kernel object carries.
SEPARABLE_RTOL = 1e-10

# In 3-D and more the Tucker ranks are the singular values of each axis's
# unfolding above this fraction of the largest: past that they are rounding
# of a dense kernel that is exactly low-rank (about 1e-16 relative).  The
# SEPARABLE_RTOL check against the dense kernel then decides.
TUCKER_RANK_RTOL = 1e-12

# Most terms a found decomposition may have: past this the passes cost more
# than the direct or FFT methods on any block, and the search is wasted.
MAX_TERMS = 64


@dataclass(frozen=True)
class Term:
    """One separable term: the kernel equals the sum of ``coef * outer(*vectors)``."""

    coef: float
    vectors: tuple[np.ndarray, ...]


def given_terms(kernel: object) -> tuple[Term, ...] | None:
    """The terms a kernel object says it is (its `terms`, else its `factors`), not yet checked.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> given_terms(SimpleNamespace(factors=([1.0, 2.0], [3.0])))
    (Term(coef=1.0, vectors=(array([1., 2.]), array([3.]))),)
    >>> given_terms(np.ones((2, 2))) is None
    True
    """
    terms = getattr(kernel, "terms", None)
    if terms is None:
        factors = getattr(kernel, "factors", None)
        terms = None if factors is None else ((1.0, factors),)
    if terms is None:
        return None
    try:
        result = []
        for term in terms:
            coef, vectors = (term.coef, term.vectors) if hasattr(term, "coef") else term
            result.append(Term(float(coef), tuple(np.asarray(v, dtype=np.float64) for v in vectors)))
    except (TypeError, ValueError):
        return None  # a claim that is not even terms changes nothing
    return tuple(result)


def flip_terms(terms: tuple[Term, ...] | None) -> tuple[Term, ...] | None:
    """The terms of the kernel flipped on every axis: each vector reversed."""
    if terms is None:
        return None
    return tuple(Term(t.coef, tuple(np.flip(v) for v in t.vectors)) for t in terms)


def separable_terms(
    weights: np.ndarray,
    factors: tuple[np.ndarray, ...] | None = None,
    terms: tuple[Term, ...] | None = None,
) -> tuple[Term, ...] | None:
    """Return the kernel as a short sum of outer products of 1-D vectors, or None.

    `factors` and `terms`, when the kernel object knows them, are trusted
    after a check against the weights (SEPARABLE_RTOL).  Otherwise any
    dimensionality gets a rank-1 test; 2-D kernels may use several terms
    from the SVD, and kernels of 3 or more axes several from a truncated
    higher-order SVD, when what is left out vanishes.

    Examples
    --------
    >>> terms = separable_terms(np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0]))
    >>> len(terms)
    1
    >>> separable_terms(np.random.default_rng(0).random((3, 3, 3))) is None
    True
    >>> g, d = np.array([1.0, 2.0, 1.0]), np.array([1.0, -2.0, 1.0])
    >>> log_like = np.einsum("i,j,k->ijk", d, g, g) + np.einsum("i,j,k->ijk", g, d, g)
    >>> len(separable_terms(log_like)) <= 4
    True
    """
    weights = np.asarray(weights, dtype=np.float64)
    scale = np.abs(weights).sum()
    if scale == 0:
        return None
    if factors is not None:
        term = Term(1.0, tuple(np.asarray(f, dtype=np.float64) for f in factors))
        if _fits((term,), weights, scale):
            return (term,)
    if weights.ndim == 1:
        return (Term(1.0, (weights,)),)
    if terms is not None and _fits(terms, weights, scale):
        return tuple(terms)
    rank1 = _rank_one(weights)
    if _fits((rank1,), weights, scale):
        return (rank1,)
    if weights.ndim == 2:
        u, s, vt = np.linalg.svd(weights)
        for rank in range(2, len(s)):
            found = tuple(Term(float(s[i]), (u[:, i], vt[i])) for i in range(rank))
            if _fits(found, weights, scale):
                return found
        return None
    found = _tucker(weights)
    return found if found is not None and _fits(found, weights, scale) else None


def _fits(terms: tuple[Term, ...], weights: np.ndarray, scale: float) -> bool:
    """Whether `terms` have the kernel's shape and sum to it within SEPARABLE_RTOL."""
    for term in terms:
        if tuple(v.shape for v in term.vectors) != tuple((n,) for n in weights.shape):
            return False
        if not (math.isfinite(term.coef) and all(np.isfinite(v).all() for v in term.vectors)):
            return False
    return _residual(terms, weights) <= SEPARABLE_RTOL * scale


def _rank_one(weights: np.ndarray) -> Term:
    """Best rank-1 fit: the leading singular vector of each axis's unfolding."""
    vectors = []
    for axis in range(weights.ndim):
        unfolded = np.moveaxis(weights, axis, 0).reshape(weights.shape[axis], -1)
        u, _, _ = np.linalg.svd(unfolded, full_matrices=False)
        vectors.append(_snap_constant(u[:, 0]))
    coef = weights
    for vector in vectors:
        coef = np.tensordot(vector, coef, axes=(0, 0))
    return Term(float(coef), tuple(vectors))


def _tucker(weights: np.ndarray) -> tuple[Term, ...] | None:
    """The truncated higher-order SVD of a kernel of 3 or more axes, as terms; None if not low-rank.

    Each axis's basis is the leading left singular vectors of its
    unfolding; the core (the kernel in those bases) gives one term per
    entry that is not rounding.  A LoG given as a dense array has rank 2
    on every axis (the Gaussian and its second derivative span each).
    """
    bases = []
    for axis in range(weights.ndim):
        unfolded = np.moveaxis(weights, axis, 0).reshape(weights.shape[axis], -1)
        u, s, _ = np.linalg.svd(unfolded, full_matrices=False)
        bases.append(u[:, : int(np.count_nonzero(s > TUCKER_RANK_RTOL * s[0]))])
    ranks = tuple(b.shape[1] for b in bases)
    if ranks == weights.shape or math.prod(ranks) > MAX_TERMS:
        return None
    core = weights
    for basis in bases:  # contracts the leading axis and appends the new one: the order comes round
        core = np.tensordot(core, basis, axes=(0, 0))
    largest = np.abs(core).max()
    terms = []
    for index in np.ndindex(*ranks):
        if abs(core[index]) > TUCKER_RANK_RTOL * largest:
            vectors = tuple(_snap_constant(b[:, i]) for b, i in zip(bases, index, strict=True))
            terms.append(Term(float(core[index]), vectors))
    return tuple(terms)


def _snap_constant(vector: np.ndarray) -> np.ndarray:
    """A vector equal to its mean up to SVD rounding, made exactly constant.

    A box given as a dense array factors into vectors that differ by about
    1e-16; exactly constant ones, past TAPS_MAX taps in float32, take the
    running-sum pass.  The residual check that follows still decides whether
    the factorisation is exact.

    Examples
    --------
    >>> _snap_constant(np.array([0.5, 0.5 + 1e-17, 0.5 - 1e-17]))
    array([0.5, 0.5, 0.5])
    """
    mean = vector.mean()
    if np.abs(vector - mean).max() <= 1e-12 * np.abs(vector).max():
        return np.full_like(vector, mean)
    return vector


def _residual(terms: tuple[Term, ...], weights: np.ndarray) -> float:
    """L1 distance between a kernel and the sum of its terms."""
    total = np.zeros_like(weights)
    for term in terms:
        outer = np.array(term.coef)
        for vector in term.vectors:
            outer = np.multiply.outer(outer, vector)
        total += outer
    return float(np.abs(total - weights).sum())


# --- how the terms share their passes ---------------------------------------------------------


@dataclass(frozen=True)
class Tap:
    """One term's vector on one kernel axis, trimmed to its nonzero weights.

    Attributes
    ----------
    start : int
        Index of its first nonzero weight in the untrimmed vector.
    weights : numpy.ndarray
        From there to its last nonzero weight; a single weight is 1 (its
        value moved into the term's coefficient).
    size : int
        The untrimmed length: what the pass shortens the axis by, plus one.
    """

    start: int
    weights: np.ndarray
    size: int

    @property
    def is_slice(self) -> bool:
        """Whether the pass is a view of its input, moved: a single weight of 1."""
        return self.weights.size == 1 and self.weights[0] == 1.0

    def key(self) -> tuple[int, int, bytes]:
        """What two taps must share to be one pass."""
        return (self.start, self.size, self.weights.tobytes())


@dataclass(frozen=True)
class Node:
    """A partial result: `parent`'s, passed through `tap` along kernel axis number `level`."""

    parent: int
    level: int
    tap: Tap | None  # None for the root, the block itself


@dataclass(frozen=True)
class Group:
    """Terms that end in the same tap on the last kernel axis: their partials summed, then one pass."""

    tap: Tap
    members: tuple[tuple[float, int], ...]  # (coef, node) pairs


@dataclass(frozen=True)
class SumPlan:
    """The passes of a sum of terms: partial results along all but the last axis, then groups.

    `nodes` come parents first (node 0 is the block); `groups` come with
    real passes first, so the slices add into a result already made.
    """

    nodes: tuple[Node, ...]
    groups: tuple[Group, ...]

    @property
    def passes(self) -> int:
        """Number of 1-D passes that compute anything (slices are free)."""
        taps = [n.tap for n in self.nodes[1:]] + [g.tap for g in self.groups]
        return sum(1 for tap in taps if tap is not None and not tap.is_slice)

    def uses(self) -> list[int]:
        """How many later passes or sums read each node's partial result."""
        uses = [0] * len(self.nodes)
        for node in self.nodes[1:]:
            uses[node.parent] += 1
        for group in self.groups:
            for _, index in group.members:
                uses[index] += 1
        return uses

    @property
    def most_partials(self) -> int:
        """The most arrays `correlate_separable` holds at once besides the block: partials, sums, result.

        Examples
        --------
        >>> g = np.array([1.0, 2.0, 1.0])
        >>> plan_sum((Term(1.0, (g, g, g)),)).most_partials  # a pass's input and output
        2
        """
        uses = self.uses()
        # Views of the block (slices of slices of it) hold no memory of their own.
        is_view = [True] * len(self.nodes)
        for index, node in enumerate(self.nodes[1:], start=1):
            is_view[index] = node.tap is not None and node.tap.is_slice and is_view[node.parent]
        live = peak = 0
        for index, node in enumerate(self.nodes[1:], start=1):
            live += 0 if is_view[index] else 1  # its output, beside its parent's
            peak = max(peak, live)
            uses[node.parent] -= 1
            live -= 1 if not is_view[node.parent] and not uses[node.parent] else 0
        result = 0
        for group in self.groups:
            # The sum being built and one scaled member, or the pass's output, beside the result.
            peak = max(peak, live + result + (2 if len(group.members) > 1 else 1))
            for _, index in group.members:
                uses[index] -= 1
                live -= 1 if not is_view[index] and not uses[index] else 0
            result = 1
        return peak


def plan_sum(terms: tuple[Term, ...]) -> SumPlan:
    """Return how `terms` run: shared leading passes, summed partials, one pass per last tap.

    Examples
    --------
    >>> g, d = np.array([1.0, 2.0, 1.0]), np.array([1.0, -2.0, 1.0])
    >>> log_3d = (Term(1.0, (d, g, g)), Term(1.0, (g, d, g)), Term(1.0, (g, g, d)))
    >>> plan_sum(log_3d).passes  # 9 passes one term at a time
    7
    >>> unsharp = (Term(2.0, (np.eye(3)[1],) * 3), Term(-1.0, (g / 4, g / 4, g / 4)))
    >>> plan_sum(unsharp).passes  # the identity is a view of the block
    3
    """
    nodes = [Node(-1, -1, None)]
    known: dict[tuple[int, tuple[int, int, bytes]], int] = {}
    groups: dict[tuple[int, int, bytes], tuple[Tap, dict[int, float]]] = {}
    for term in terms:
        coef, taps = _trimmed(term)
        if coef == 0.0:
            continue
        node = 0
        for level, tap in enumerate(taps[:-1]):
            key = (node, tap.key())
            if key not in known:
                known[key] = len(nodes)
                nodes.append(Node(node, level, tap))
            node = known[key]
        _, members = groups.setdefault(taps[-1].key(), (taps[-1], {}))
        members[node] = members.get(node, 0.0) + coef
    ordered = sorted(groups.values(), key=lambda group: group[0].is_slice)
    kept = [(tap, tuple((c, n) for n, c in members.items() if c != 0.0)) for tap, members in ordered]
    return SumPlan(tuple(nodes), tuple(Group(tap, members) for tap, members in kept if members))


_ONE = np.ones(1)


def _trimmed(term: Term) -> tuple[float, list[Tap]]:
    """A term's coefficient and taps; coefficient 0 if a vector is all zeros."""
    coef = term.coef
    taps = []
    for vector in term.vectors:
        nonzero = np.flatnonzero(vector)
        if nonzero.size == 0:
            return 0.0, []
        first, last = int(nonzero[0]), int(nonzero[-1])
        weights = vector[first : last + 1]
        if weights.size == 1:
            coef *= float(weights[0])
            weights = _ONE
        taps.append(Tap(first, weights, vector.size))
    return coef, taps


def plan_summary(terms: tuple[Term, ...]) -> str:
    """How a sum of terms runs, in a few words, for ``convflow plan``.

    Examples
    --------
    >>> plan_summary((Term(1.0, (np.ones(3), np.ones(2))),))
    '1 term, 2 passes'
    """
    passes, count = plan_sum(terms).passes, len(terms)
    return f"{count} term{'s' if count != 1 else ''}, {passes} pass{'es' if passes != 1 else ''}"
