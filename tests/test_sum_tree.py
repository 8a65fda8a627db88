import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from qlearn import sampling, sum_tree


def numpy_heap(leaves: np.ndarray, combine=np.add) -> np.ndarray:
    """The whole heap [2P] above ``leaves`` [P], each inner node ``combine`` of its children in
    float32 (node k's children are 2k and 2k + 1; node 0 unused): the tree's invariant."""
    out = np.zeros(2 * leaves.size, np.float32)
    out[leaves.size :] = leaves
    for k in range(leaves.size - 1, 0, -1):
        out[k] = combine(out[2 * k], out[2 * k + 1])
    return out


def assert_stored_levels_are_the_heap(levels, heap: np.ndarray) -> None:
    """Each stored level [2ᵈ] is the heap's level d, bit for bit."""
    for level in levels:
        width = np.asarray(level).size
        np.testing.assert_array_equal(np.asarray(level), heap[width : 2 * width])


@pytest.mark.parametrize("capacity", [1, 5, 8, 1000, 100_003])  # depths 1, 3, 3, 10, 17
def test_updates_keep_every_inner_node_the_sum_of_its_children(capacity):
    """The stored levels are those of the full heap of pairwise float32 sums, bit for bit, after
    overlapping updates (repeated indices too); so is :func:`sum_tree.pyramid` of the leaves."""
    rng = np.random.default_rng(capacity)
    tree = sum_tree.init(capacity)
    assert tree.leaves >= capacity and tree.leaves == 2**tree.depth
    depths = sum_tree.stored_depths(tree.depth)
    assert [np.log2(level.size) for level in tree.levels] == depths
    assert depths[0] == 0 and depths[-1] == tree.depth
    assert all(0 < b - a <= sum_tree.GROUP for a, b in itertools.pairwise(depths))
    reference = np.zeros(capacity)
    update = jax.jit(sum_tree.update)
    for _ in range(5):  # overlapping updates, repeated indices included
        idx = rng.integers(0, capacity, 7)
        mass = rng.exponential(size=7).astype(np.float32)
        tree = update(tree, jnp.asarray(idx), jnp.asarray(mass))
        got = np.asarray(sum_tree.get(tree, jnp.asarray(idx)))
        for i in idx:  # a repeated index took one of its masses
            assert got[list(idx).index(i)] in mass[idx == i]
            reference[i] = got[list(idx).index(i)]
    leaves = np.asarray(tree.levels[-1])
    heap = numpy_heap(leaves)
    assert_stored_levels_are_the_heap(tree.levels, heap)
    assert_stored_levels_are_the_heap(sum_tree.pyramid(jnp.asarray(leaves)), heap)
    np.testing.assert_array_equal(leaves[:capacity], reference)
    np.testing.assert_allclose(float(sum_tree.total(tree)), reference.sum(), rtol=1e-6)


@pytest.mark.parametrize("capacity", [2, 5, 1000, 100_003])
def test_grouped_descent_makes_the_level_by_level_choices(capacity):
    """:func:`sum_tree.sample` stores every :data:`sum_tree.GROUP`-th level and rebuilds the
    levels between from blocks; its draws are those of the textbook descent through the full
    heap — one level at a time, the same Bernoulli word per level — leaf for leaf."""
    rng = np.random.default_rng(capacity)
    mass = rng.exponential(size=capacity).astype(np.float32) * (rng.random(capacity) > 0.3)
    mass[0] = 1.0  # a positive total
    tree = jax.jit(sum_tree.update)(sum_tree.init(capacity), jnp.arange(capacity), mass)
    words = jax.random.bits(jax.random.key(capacity), (4096, tree.depth), jnp.uint32)
    nodes = numpy_heap(np.asarray(tree.levels[-1]))
    node = np.ones(words.shape[0], np.int64)
    for level in range(tree.depth):
        left, right = nodes[2 * node], nodes[2 * node + 1]
        left_lighter = left <= right
        lighter = np.where(left_lighter, left, right)
        take = np.asarray(
            sampling.bernoulli(words[:, level], jnp.asarray(lighter / (left + right)))
        )
        node = 2 * node + np.where(take == left_lighter, 0, 1)
    drawn = np.asarray(jax.jit(sum_tree.sample)(tree, words))
    np.testing.assert_array_equal(drawn, node - tree.leaves)
    assert np.all(mass[drawn] > 0)


@pytest.fixture(scope="module")
def large_tree():
    """100,003 leaves (not a power of two) with exponential masses, the first ten at 0."""
    capacity = 100_003
    mass = np.random.default_rng(0).exponential(size=capacity).astype(np.float32) ** 0.6
    mass[:10] = 0.0
    tree = jax.jit(sum_tree.update)(sum_tree.init(capacity), jnp.arange(capacity), mass)
    draws = 4_000_000

    @jax.jit
    def counts(tree, key):
        words = jax.random.bits(key, (draws, tree.depth), jnp.uint32)
        return jnp.bincount(sum_tree.sample(tree, words), length=tree.leaves)

    return mass, np.asarray(counts(tree, jax.random.key(1)))


def test_draws_are_proportional_to_the_masses_at_100k_leaves(large_tree):
    """A χ² test of 4M draws against P(i) = m_i / Σ m over 100k leaves; the same counts
    against masses 10% off in a quarter of the leaves are rejected (the test has power)."""
    mass, counts = large_tree
    capacity = mass.size
    assert counts[:10].sum() == 0 and counts[capacity:].sum() == 0  # zero mass: never drawn
    live = slice(10, capacity)
    expected = counts.sum() * mass[live] / mass[live].sum(dtype=np.float64)
    assert stats.chisquare(counts[live], expected).pvalue > 1e-3
    wrong = mass.astype(np.float64)
    wrong[10 : capacity // 4] *= 1.1
    expected_wrong = counts.sum() * wrong[live] / wrong[live].sum()
    assert stats.chisquare(counts[live], expected_wrong).pvalue < 1e-6


def test_sampling_vmaps_over_trees():
    trees = jax.vmap(lambda m: sum_tree.update(sum_tree.init(4), jnp.arange(4), m))(
        jnp.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    )
    words = jax.random.bits(jax.random.key(0), (2, 50, trees.depth), jnp.uint32)
    draws = jax.vmap(sum_tree.sample)(trees, words)
    np.testing.assert_array_equal(draws[0], 0)  # the only leaf with mass, per tree
    np.testing.assert_array_equal(draws[1], 3)


@pytest.mark.parametrize("capacity", [1, 5, 8, 1000])
def test_the_min_tree_is_the_exact_min_of_the_positive_masses(capacity):
    """With track_min, after overlapping updates (repeated indices, masses set to 0 and
    back) the min tree's stored levels equal its numpy recomputation from the stored leaves
    (+∞ for a mass of 0) bit for bit, min_mass is the smallest positive mass, and the sums are
    what they are without it."""
    rng = np.random.default_rng(capacity)
    tree, plain = sum_tree.init(capacity, track_min=True), sum_tree.init(capacity)
    assert float(sum_tree.min_mass(tree)) == np.inf  # empty
    update = jax.jit(sum_tree.update)
    for step in range(6):
        idx = jnp.asarray(rng.integers(0, capacity, 7))
        mass = rng.exponential(size=7).astype(np.float32)
        mass[rng.uniform(size=7) < 0.3] = 0.0  # some slots emptied
        if step == 0:
            mass[:] = np.float32(1e-30)  # tiny but positive: still the min
        tree, plain = update(tree, idx, jnp.asarray(mass)), update(plain, idx, jnp.asarray(mass))
        leaves = np.asarray(tree.levels[-1])
        assert len(tree.mins) == len(tree.levels) - 1
        heap = numpy_heap(np.where(leaves > 0, leaves, np.inf).astype(np.float32), np.minimum)
        assert_stored_levels_are_the_heap(tree.mins, heap)
        positive = leaves[leaves > 0]
        expected = positive.min() if positive.size else np.inf
        assert float(sum_tree.min_mass(tree)) == expected
    for level, plain_level in zip(tree.levels, plain.levels, strict=True):
        np.testing.assert_array_equal(level, plain_level)
    assert plain.mins is None
    with pytest.raises(ValueError, match="track_min=True"):
        sum_tree.min_mass(plain)


@pytest.mark.parametrize("capacity", [3, 50_000])  # the root's block only; four blocks
def test_a_draw_returns_exactly_what_the_tree_holds_for_the_weights(capacity):
    """:func:`sum_tree.draw` takes the leaves' masses, the total and the min from the descent
    (so no read of the tree follows it); they are the stored ones, bit for bit, and the leaves
    are :func:`sum_tree.sample`'s."""
    masses = jax.random.uniform(jax.random.key(0), (capacity,)) * (jnp.arange(capacity) % 7 > 0)
    tree = sum_tree.update(sum_tree.init(capacity, track_min=True), jnp.arange(capacity), masses)
    words = jax.random.bits(jax.random.key(1), (256, tree.depth), jnp.uint32)
    drawn = jax.jit(sum_tree.draw)(tree, words)
    np.testing.assert_array_equal(drawn.index, jax.jit(sum_tree.sample)(tree, words))
    np.testing.assert_array_equal(drawn.mass, sum_tree.get(tree, drawn.index))
    assert float(drawn.total) == float(sum_tree.total(tree))
    assert float(drawn.min_mass) == float(sum_tree.min_mass(tree))
    assert np.all(np.asarray(drawn.mass) > 0)  # a leaf of mass 0 is never drawn
