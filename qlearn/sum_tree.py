"""A sum tree of non-negative masses, in pure JAX: set masses, read the total, and draw leaves
with probability mass / total, for proportional prioritised replay (:mod:`qlearn.replay`).

Layout: ``nodes`` float32 [2P], P = the next power of two ≥ the capacity C; the root is
``nodes[1]``, the leaf of item i is ``nodes[P + i]``, the children of node k are 2k and 2k + 1
(``nodes[0]`` is unused). Every inner node is recomputed as the float sum of its two children
whenever a leaf below it changes, so no rounding error accumulates over updates.

Sampling descends from the root: at each node, a 32-bit Bernoulli draw
(:func:`qlearn.sampling.bernoulli`) picks the LIGHTER child with probability
lighter / (left + right), else the heavier one. The probability of a leaf is the product of
the ratios along its path, which telescopes to mass / total; testing the lighter child keeps
each factor exact to a relative ≈ 2⁻²³ + 2⁻³²/q (q ≤ ½, the lighter child's share), so a leaf's
probability is exact to O(log₂ C · (2⁻²³ + 2⁻³²/q_min)) relative, whatever the capacity C.
(The textbook descent compares one float32 u ∈ [0, total) with prefix sums: u has 2²⁴ grid
points, so at C = 10⁶ an average leaf would get 16 of them, ±6% of its probability.) A leaf of
mass 0 is never drawn while the total is positive.

Optionally (``init(capacity, track_min=True)``) the tree also keeps a **min tree** ``mins``
float32 [2P] of the same layout: leaf i holds the mass of item i where it is positive and +∞
where it is 0 (an empty slot), every inner node the min of its two children, so
:func:`min_mass` = min over the positive masses, read from the root. A min of floats rounds
nothing, so it is exact after any sequence of updates. Prioritised replay's buffer-wide
normalisation of the importance weights needs it (:func:`qlearn.replay.importance_weights`).

All functions are pure, with static shapes, so they ``vmap`` over runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from qlearn import sampling


@struct.dataclass
class SumTree:
    """The tree of :mod:`qlearn.sum_tree`: ``nodes`` float32 [2P] (P = ``leaves``), the sums,
    and ``mins`` float32 [2P], the min tree of the positive masses (None when not tracked)."""

    nodes: jax.Array
    mins: jax.Array | None = None

    @property
    def leaves(self) -> int:
        """P, the number of leaf slots (a power of two ≥ the capacity)."""
        return self.nodes.shape[-1] // 2

    @property
    def depth(self) -> int:
        """log₂ P: levels below the root, and the PRNG words a draw takes."""
        return depth_of(self.leaves)


def depth_of(capacity: int) -> int:
    """Levels of the tree of ``capacity`` leaves (at least 1)."""
    return max(1, (int(capacity) - 1).bit_length())


def init(capacity: int, *, track_min: bool = False) -> SumTree:
    """A tree of ``capacity`` leaves, all of mass 0 (with ``track_min``, also the min tree of
    the positive masses, all +∞)."""
    size = 2 * 2 ** depth_of(capacity)
    mins = jnp.full(size, jnp.inf, jnp.float32) if track_min else None
    return SumTree(jnp.zeros(size, jnp.float32), mins)


def total(tree: SumTree) -> jax.Array:
    """Σ masses, float32 []."""
    return tree.nodes[1]


def min_mass(tree: SumTree) -> jax.Array:
    """min over the positive masses, float32 [] (+∞ when every mass is 0); exact. Needs a tree
    made with ``track_min``."""
    if tree.mins is None:
        raise ValueError("min_mass needs a tree made with sum_tree.init(..., track_min=True)")
    return tree.mins[1]


def get(tree: SumTree, index: jax.Array) -> jax.Array:
    """The masses of leaves ``index`` (int [...]), float32 [...]."""
    return tree.nodes[tree.leaves + index]


GROUP = 4
"""Levels handled by one gather and one scatter: :func:`update` recomputes the 2ᴳ − 1 inner
nodes of a G-level subtree at once from its 2ᴳ bottom nodes, and :func:`sample` reads the
2 + 4 + … + 2ᴳ descendants of its node at once and makes G choices among them — so a tree of
depth D takes ⌈D / G⌉ dependent gathers (and scatters), not D. The node values and the
choices are the level-by-level ones, to the bit: only the memory traffic is grouped."""


def _groups(depth: int) -> list[int]:
    """The levels of each group, bottom to top for :func:`update` (top to bottom reversed):
    ``depth`` split into groups of :data:`GROUP`, the last one shorter."""
    return [min(GROUP, depth - start) for start in range(0, depth, GROUP)]


def _rebuild(values: jax.Array, bottom: jax.Array, levels: int, combine) -> jax.Array:
    """The inner nodes above ``bottom`` (int [n], nodes at one level) for ``levels`` levels,
    recomputed with ``combine`` (``jnp.add`` or ``jnp.minimum`` of the two children, as
    elementwise ops: a reduction could be merged with the next level's and re-associated)
    from the 2^levels nodes under each of their subtree roots: ``values`` with those nodes
    set."""
    top = bottom >> levels  # the subtree root of each changed node
    width = 1 << levels
    under = values[(top << levels)[:, None] + jnp.arange(width)]  # [n, 2^levels]
    indices, sums = [], []
    for level in range(1, levels + 1):  # each level from the one below it, pair by pair
        under = combine(under[:, 0::2], under[:, 1::2])  # [n, 2^(levels-level)]
        indices.append((top << (levels - level))[:, None] + jnp.arange(under.shape[1]))
        sums.append(under)
    return values.at[jnp.concatenate(indices, 1)].set(jnp.concatenate(sums, 1))  # one scatter


def update(tree: SumTree, index: jax.Array, mass: jax.Array) -> SumTree:
    """Set leaves ``index`` (int [n]) to ``mass`` (float [n], ≥ 0), then recompute their
    ancestors from their children (sums; mins too where tracked), :data:`GROUP` levels per
    gather and scatter. A repeated index takes one of its masses, and its ancestors (and its
    min-tree leaf) are consistent with whichever it took."""
    leaf = tree.leaves + index
    nodes = tree.nodes.at[leaf].set(jnp.asarray(mass, jnp.float32))
    node = leaf
    for levels in _groups(tree.depth):  # each group from the already-final level below it
        nodes = _rebuild(nodes, node, levels, jnp.add)
        node = node >> levels
    mins = tree.mins
    if mins is not None:  # the min tree's leaves from the stored masses, so both agree
        stored = nodes[leaf]
        mins = mins.at[leaf].set(jnp.where(stored > 0, stored, jnp.inf))
        node = leaf
        for levels in _groups(tree.depth):
            mins = _rebuild(mins, node, levels, jnp.minimum)
            node = node >> levels
    return SumTree(nodes, mins)


def _descend(
    nodes: jax.Array, node: jax.Array, words: jax.Array, levels: int
) -> tuple[jax.Array, jax.Array]:
    """``levels`` levels of the descent from ``node`` (int32 [...]), one word of ``words``
    uint32 [..., levels] per level: (the node reached, its value). One gather reads the
    node's 2 + 4 + … + 2^levels descendants, then the choices are made among them."""
    width = 2 << levels  # descendants 2..2^(levels+1) - 1 of the node, heap-numbered
    offsets = np.arange(2, width)
    depth = np.array([int(k).bit_length() - 1 for k in offsets])  # 1..levels
    below = nodes[(node[..., None] << depth) + (offsets - (1 << depth))]
    local = jnp.ones_like(node)  # heap number of the choice within the subtree
    for level in range(levels):
        left = jnp.take_along_axis(below, (2 * local - 2)[..., None], axis=-1)[..., 0]
        right = jnp.take_along_axis(below, (2 * local - 1)[..., None], axis=-1)[..., 0]
        left_lighter = left <= right
        lighter = jnp.where(left_lighter, left, right)
        take_lighter = sampling.bernoulli(words[..., level], lighter / (left + right))
        go_left = take_lighter == left_lighter
        local = 2 * local + jnp.where(go_left, 0, 1)
        value = jnp.where(go_left, left, right)
    return (node << levels) + local - (1 << levels), value


@struct.dataclass
class Draw:
    """Leaves drawn by :func:`draw`, with what importance weights read of the tree."""

    index: jax.Array
    """int32 [...]: the leaves drawn."""
    mass: jax.Array
    """float32 [...]: their masses."""
    total: jax.Array
    """float32 []: Σ masses (:func:`total`)."""
    min_mass: jax.Array | None = None
    """float32 []: :func:`min_mass` (None unless the tree tracks it)."""


def draw(tree: SumTree, words: jax.Array) -> Draw:
    """Leaves drawn with probability mass / total from ``words`` uint32 [..., depth], one word
    per level, with their masses and the tree's total (and min mass, where tracked). The total
    must be positive. Each group of :data:`GROUP` levels reads its node's descendants in one
    gather, then makes the levels' choices among them (:func:`_descend`).

    Two things are for XLA:CPU. The groups below the top one run as a loop, so each group's
    gather indices are the node its loop step starts from: unrolled, XLA fused the whole
    descent above a group into that group's gather and recomputed it for every element read
    (≈ 1.7× the time of 64 draws from a 50,000-leaf tree). And the masses, total and min come
    out of the descent (the values it chose, the roots carried through its loop) rather than
    from reads of the tree after it: such a read feeds only the importance weights, not the
    priority update that follows, so XLA could not order it before that update's in-place
    scatter and copied the whole tree, twice per update (prioritised DQN on CartPole: most of
    its cost over uniform replay)."""
    top, *rest = reversed(_groups(tree.depth))  # the top group may be the short one
    start = jnp.ones(words.shape[:-1], jnp.int32)
    node, mass = _descend(tree.nodes, start, words[..., :top], top)
    roots = (tree.nodes[1], None if tree.mins is None else tree.mins[1])

    def group(i: jax.Array, carry: tuple) -> tuple:
        node, _, roots = carry
        at = top + i * GROUP
        node, mass = _descend(
            tree.nodes, node, jax.lax.dynamic_slice_in_dim(words, at, GROUP, -1), GROUP
        )
        # the roots pass through unchanged, but as the loop's values rather than invariants
        # (XLA hoists an invariant out of the loop, back to a read after it)
        return node, mass, jax.tree.map(lambda r: jnp.where(i >= 0, r, jnp.nan), roots)

    if rest:
        node, mass, roots = jax.lax.fori_loop(0, len(rest), group, (node, mass, roots))
    return Draw(node - tree.leaves, mass, *roots)


def sample(tree: SumTree, words: jax.Array) -> jax.Array:
    """The leaves of :func:`draw`: int32 [...]."""
    return draw(tree, words).index
