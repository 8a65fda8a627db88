"""A sum tree of non-negative masses, in pure JAX: set masses, read the total, and draw leaves
with probability mass / total, for proportional prioritised replay (:mod:`qlearn.replay`).

The tree is the heap of pairwise sums over P leaves (P = the next power of two ≥ the capacity
C; node k's children are 2k and 2k + 1): every inner node is the float sum of its two
children, recomputed whenever a leaf below it changes, so no rounding error accumulates over
updates. Only every :data:`GROUP`-th level is stored (``SumTree.levels``: the root, those
levels, the P leaves); the levels between are rebuilt where they are read, from the block of
2ᴳ stored nodes under a stored node, by the same pairwise sums (:func:`pyramid`), so they are
the full heap's values to the bit. XLA:CPU copies a block of contiguous nodes far faster than
it gathers or scatters the same number one by one, which is what the grouping buys: an update
of n leaves reads n blocks and writes n sums per stored level, a draw reads one block per
stored level.

Sampling descends from the root: at each node, a 32-bit Bernoulli draw
(:func:`qlearn.sampling.bernoulli`) picks the LIGHTER child with probability
lighter / (left + right), else the heavier one. The probability of a leaf is the product of
the ratios along its path, which telescopes to mass / total; testing the lighter child keeps
each factor exact to a relative ≈ 2⁻²³ + 2⁻³²/q (q ≤ ½, the lighter child's share), so a leaf's
probability is exact to O(log₂ C · (2⁻²³ + 2⁻³²/q_min)) relative, whatever the capacity C.
(The textbook descent compares one float32 u ∈ [0, total) with prefix sums: u has 2²⁴ grid
points, so at C = 10⁶ an average leaf would get 16 of them, ±6% of its probability.) A leaf of
mass 0 is never drawn while the total is positive.

Optionally (``init(capacity, track_min=True)``) the tree also keeps a **min tree**
(``SumTree.mins``, its stored levels above the leaves): leaf i is the mass of item i where it
is positive and +∞ where it is 0 (an empty slot), read from the masses, every inner node the
min of its two children, so :func:`min_mass` = min over the positive masses, read from the
root. A min of floats rounds nothing, so it is exact after any sequence of updates.
Prioritised replay's buffer-wide normalisation of the importance weights needs it
(:func:`qlearn.replay.importance_weights`).

All functions are pure, with static shapes, so they ``vmap`` over runs.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import sampling


@struct.dataclass
class SumTree:
    """The tree of :mod:`qlearn.sum_tree`: its stored levels, top first. ``levels`` float32
    ([1], …, [P]): the root, the levels at every :data:`GROUP`-th depth above the leaves, and
    the P = ``leaves`` masses; ``mins`` (None when not tracked): the min tree's levels at the
    same depths but the leaves' (its leaves are the masses, with 0 read as +∞)."""

    levels: tuple[jax.Array, ...]
    mins: tuple[jax.Array, ...] | None = None

    @property
    def leaves(self) -> int:
        """P, the number of leaf slots (a power of two ≥ the capacity)."""
        return self.levels[-1].shape[-1]

    @property
    def depth(self) -> int:
        """log₂ P: levels below the root, and the PRNG words a draw takes."""
        return depth_of(self.leaves)


GROUP = 4
"""Levels from one stored level to the next (counted up from the leaves; the top group may be
shorter). The levels between are rebuilt from blocks of 2ᴳ nodes as the same pairwise sums,
so every value, and every choice of a draw, is the fully stored tree's, to the bit. G = 4 was
the fastest of 2–8 for a draw of 64 from a 50,000-leaf tree with its two updates, at 8 runs
on 2 cores (177–212 µs; G = 2: 228, 3: 199, 5: 274, 6: 445, 8: 480)."""


def depth_of(capacity: int) -> int:
    """Levels of the tree of ``capacity`` leaves (at least 1)."""
    return max(1, (int(capacity) - 1).bit_length())


def stored_depths(depth: int) -> list[int]:
    """The depths a tree of ``depth`` levels stores, top first: 0 (the root), then every
    :data:`GROUP`-th depth counted up from ``depth`` (the leaves), so the top group may be
    the short one: ``stored_depths(17) == [0, 1, 5, 9, 13, 17]``."""
    return [0, *range(depth % GROUP or GROUP, depth + 1, GROUP)]


def init(capacity: int, *, track_min: bool = False) -> SumTree:
    """A tree of ``capacity`` leaves, all of mass 0 (with ``track_min``, also the min tree of
    the positive masses, all +∞)."""
    depths = stored_depths(depth_of(capacity))
    levels = tuple(jnp.zeros(2**d, jnp.float32) for d in depths)
    mins = tuple(jnp.full(2**d, jnp.inf, jnp.float32) for d in depths[:-1])
    return SumTree(levels, mins if track_min else None)


def total(tree: SumTree) -> jax.Array:
    """Σ masses, float32 []."""
    return tree.levels[0][..., 0]


def min_mass(tree: SumTree) -> jax.Array:
    """min over the positive masses, float32 [] (+∞ when every mass is 0); exact. Needs a tree
    made with ``track_min``."""
    if tree.mins is None:
        raise ValueError("min_mass needs a tree made with sum_tree.init(..., track_min=True)")
    return tree.mins[0][..., 0]


def get(tree: SumTree, index: jax.Array) -> jax.Array:
    """The masses of leaves ``index`` (int [...]), float32 [...]."""
    return tree.levels[-1][index]


def _min_leaf(mass: jax.Array) -> jax.Array:
    """The min tree's view of masses: +∞ for 0 (an empty slot)."""
    return jnp.where(mass > 0, mass, jnp.inf)


def pyramid(block: jax.Array, combine=jnp.add) -> list[jax.Array]:
    """The subtree above ``block`` [..., 2ᵍ] (the nodes at one level under one node): its
    levels, top first, [..., 1], [..., 2], …, [..., 2ᵍ], each node ``combine`` (``jnp.add``,
    or ``jnp.minimum`` for the min tree) of its two children as one elementwise op — the
    pairwise order of a stored tree, so the values are its values to the bit (a reduction
    could be re-associated)."""
    rows = [block]
    while rows[0].shape[-1] > 1:
        rows.insert(0, combine(rows[0][..., 0::2], rows[0][..., 1::2]))
    return rows


def _refresh(
    uppers: tuple[jax.Array, ...], below: jax.Array, node: jax.Array, combine, leaf=None
) -> tuple[jax.Array, ...]:
    """The stored levels ``uppers`` (top first) above ``below`` (the final values of the level
    under them), recomputed for the changed nodes ``node`` (int [n], indices into ``below``):
    each stored node above one of them from the block of 2ᵍ nodes under it, the top one
    (the root) from its whole level at once. ``leaf`` maps the blocks read from ``below``
    first (the min tree's view of the masses)."""
    out = []
    for upper in reversed(uppers):
        levels = (below.shape[-1] // upper.shape[-1]).bit_length() - 1  # g
        if upper.shape[-1] == 1:  # the root: one block, shared by every changed node
            block = below
        else:
            node = node >> levels
            block = _blocks(below, node, levels)  # [n, 2ᵍ]
        if leaf is not None:
            block, leaf = leaf(block), None
        sums = pyramid(block, combine)[0][..., 0]
        below = sums[None] if upper.shape[-1] == 1 else upper.at[node].set(sums)
        out.append(below)
    return tuple(reversed(out))


def update(tree: SumTree, index: jax.Array, mass: jax.Array) -> SumTree:
    """Set leaves ``index`` (int [n]) to ``mass`` (float [n], ≥ 0), then recompute the stored
    nodes above them (sums; mins too where tracked) from the blocks under them. A repeated
    index takes one of its masses, and its ancestors (and its min-tree view) are consistent
    with whichever it took."""
    leaves = tree.levels[-1].at[index].set(jnp.asarray(mass, jnp.float32))
    levels = (*_refresh(tree.levels[:-1], leaves, index, jnp.add), leaves)
    mins = tree.mins
    if mins is not None:
        mins = _refresh(mins, leaves, index, jnp.minimum, leaf=_min_leaf)
    return SumTree(levels, mins)


def _pick(row: jax.Array, index: jax.Array) -> jax.Array:
    """``row[..., index]`` per draw: ``row`` [w] (shared by every draw) or [..., w] (one per
    draw), ``index`` int [...]."""
    if row.ndim == 1:
        return row[index]
    return jnp.take_along_axis(row, index[..., None], axis=-1)[..., 0]


def _blocks(level: jax.Array, node: jax.Array, levels: int) -> jax.Array:
    """The 2^levels nodes of ``level`` under each of ``node`` (int [...], the level 2^levels
    times narrower): float32 [..., 2^levels], each one contiguous slice (XLA:CPU runs a batch
    of slices far faster than the same elements gathered one by one)."""
    width = 1 << levels
    flat = (node << levels).reshape(-1)
    rows = jax.vmap(lambda start: jax.lax.dynamic_slice_in_dim(level, start, width))(flat)
    return rows.reshape(*node.shape, width)


def _descend(rows: list[jax.Array], words: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The descent through one block's subtree (:func:`pyramid`: ``rows`` [2ʲ], shared, or
    [..., 2ʲ], one per draw, for j = 0..g), one word of ``words`` uint32 [..., g] per level:
    (the bottom node reached, int32 [...], an index into ``rows[-1]``; its value)."""
    local = jnp.zeros(words.shape[:-1], jnp.int32)
    value = jnp.broadcast_to(rows[0][..., 0], local.shape)
    for level, row in enumerate(rows[1:]):
        left, right = _pick(row, 2 * local), _pick(row, 2 * local + 1)
        left_lighter = left <= right
        lighter = jnp.where(left_lighter, left, right)
        take_lighter = sampling.bernoulli(words[..., level], lighter / (left + right))
        go_left = take_lighter == left_lighter
        local = 2 * local + jnp.where(go_left, 0, 1)
        value = jnp.where(go_left, left, right)
    return local, value


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
    must be positive. The subtree under the root is built once for every draw (from the
    first stored level); below it, each draw reads the block of 2ᴳ nodes under the node it
    reached and descends through that block's subtree (:func:`pyramid`, :func:`_descend`).

    The masses come out of the descent (the values it chose) rather than from a read of the
    leaves after it: such a read feeds only the importance weights, not the priority update
    that follows, so XLA could not order it before that update's in-place scatter and would
    copy the leaves to keep them (it did, twice per update, before this). The total and the
    min are read from the one-node root levels, whose copies cost nothing."""
    levels = tree.levels
    top = pyramid(levels[1])  # the subtree under the root, shared by every draw
    node, mass = _descend(top, words[..., : len(top) - 1])
    used = len(top) - 1
    for upper, below in itertools.pairwise(levels[1:]):
        g = (below.shape[-1] // upper.shape[-1]).bit_length() - 1
        local, mass = _descend(pyramid(_blocks(below, node, g)), words[..., used : used + g])
        node, used = (node << g) + local, used + g
    min_root = None if tree.mins is None else min_mass(tree)
    return Draw(node, mass, total(tree), min_root)


def sample(tree: SumTree, words: jax.Array) -> jax.Array:
    """The leaves of :func:`draw`: int32 [...]."""
    return draw(tree, words).index
