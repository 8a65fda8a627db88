"""The sequence replay: which sequences are valid as the ring turns over, that uniform and
prioritised draws follow their distributions, R2D2's η-mixed priority, and the n-step rows of a
sequence against a plain numpy loop that never crosses an episode end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from qlearn import sequence_replay, sum_tree
from qlearn.types import Transition

N, L, P, C = 3, 4, 2, 8  # envs, length, period, capacity in steps of each env


def filled(written, prioritized=False):
    """A buffer after ``written`` steps; step w of env e stores the number 1000 + 100·e + w
    (0: never written)."""
    buf = sequence_replay.init(jnp.int32(0), C, N, L, P, prioritized=prioritized)
    add = jax.jit(sequence_replay.add)
    for w in range(written):
        buf = add(buf, 1000 + 100 * jnp.arange(N, dtype=jnp.int32) + w)
    return buf


def expected_sequences(written):
    """The valid sequences by the definition: complete (all L steps written) and not yet
    overwritten (the first step is among the last C written), started every P steps."""
    starts = [k * P for k in range(written) if k * P + L <= written and k * P >= written - C]
    return {(e, s) for e in range(N) for s in starts}


@pytest.mark.parametrize("written", [L, L + 1, C, C + 1, C + P, 3 * C + 1])
def test_valid_sequences_are_the_complete_ones_not_yet_overwritten(written):
    buf = filled(written, prioritized=True)
    first, count = sequence_replay.valid_range(buf)
    want = expected_sequences(written)
    assert int(count) * N == len(want)
    assert int(first) * P == min(start for _, start in want)
    # every slot of a valid sequence gathers its L consecutive steps; the others have mass 0
    slots = np.arange(buf.slots)
    seqs = np.asarray(sequence_replay.gather(buf, jnp.asarray(slots)))
    mass = np.asarray(sum_tree.get(buf.priorities, jnp.asarray(slots)))
    got = set()
    for slot, seq, m in zip(slots, seqs, mass, strict=True):
        env, start = (int(seq[0]) - 1000) // 100, int(seq[0]) % 100
        if (env, start) in want:
            np.testing.assert_array_equal(seq, 1000 + 100 * env + start + np.arange(L))
            assert m == 1.0
            got.add((env, start))
        else:
            assert m == 0.0, (slot, seq)
    assert got == want


def test_uniform_and_prioritised_draws_follow_their_distributions():
    """χ² tests over 20,000 draws: uniform over the valid sequences (of every env), and in
    proportion to the masses after new priorities p = |δ|-mixtures are set."""
    buf = filled(C + 3, prioritized=True)
    want = sorted(expected_sequences(C + 3))
    draws = 20_000
    words = jax.random.bits(jax.random.key(0), (draws, 2), jnp.uint32)
    seqs, _ = jax.jit(sequence_replay.sample)(buf, words)
    firsts = [((int(s[0]) - 1000) // 100, int(s[0]) % 100) for s in np.asarray(seqs)]
    counts = np.array([firsts.count(w) for w in want])
    assert counts.sum() == draws  # nothing invalid is ever drawn
    assert stats.chisquare(counts).pvalue > 1e-3

    slots = jnp.asarray(sorted(set(np.asarray(_).tolist())))
    priority = jnp.linspace(0.5, 4.0, slots.size)
    buf = sequence_replay.update_priorities(buf, slots, priority, 1.0, 0.0)
    words = jax.random.bits(jax.random.key(1), (draws, buf.priorities.depth), jnp.uint32)
    _, drawn, weight = jax.jit(sequence_replay.sample_prioritized)(buf, words, 1.0)
    counts = np.array([(np.asarray(drawn) == s).sum() for s in np.asarray(slots)])
    expected = draws * np.asarray(priority, np.float64) / np.sum(np.asarray(priority, np.float64))
    assert counts.sum() == draws
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    # importance weights (N·P(i))^−β / max over the batch, N the valid sequences
    size = len(want)
    p_i = np.asarray(priority)[np.searchsorted(np.asarray(slots), np.asarray(drawn))]
    w = (size * p_i / float(priority.sum())) ** -1.0
    np.testing.assert_allclose(weight, w / w.max(), rtol=1e-5)


def test_mixed_priority_is_r2d2s_eta_mixture():
    td = jnp.array([[1.0, 0.0], [3.0, 2.0], [2.0, 4.0]])  # [T, B]
    got = sequence_replay.mixed_priority(td, 0.9)
    np.testing.assert_allclose(got, [0.9 * 3 + 0.1 * 2, 0.9 * 4 + 0.1 * 2], rtol=1e-6)


def test_init_refuses_a_sequence_the_ring_cannot_hold():
    with pytest.raises(ValueError, match="length \\+ period = 6"):
        sequence_replay.init(jnp.int32(0), 5, N, L, P)
    with pytest.raises(ValueError, match="period = 5"):
        sequence_replay.init(jnp.int32(0), 50, N, L, 5)


def numpy_rows(reward, terminated, truncated, burn_in, n, gamma):
    """Row by row: sum rewards until n steps, the sequence's end or an episode's end."""
    length, batch = reward.shape
    rows = []
    for t in range(burn_in, length):
        for b in range(batch):
            total, m = 0.0, 0
            while m < n and t + m < length:
                total += gamma**m * reward[t + m, b]
                m += 1
                if terminated[t + m - 1, b] or truncated[t + m - 1, b]:
                    break
            last = t + m - 1
            rows.append((total, m, terminated[last, b], truncated[last, b], last))
    return rows


@pytest.mark.parametrize("n", [1, 3, 5])
def test_n_step_rows_match_numpy_and_never_cross_an_episode_end(n):
    rng = np.random.default_rng(n)
    length, batch, burn_in, gamma = 12, 5, 3, 0.9
    reward = rng.normal(size=(length, batch)).astype(np.float32)
    terminated = rng.random((length, batch)) < 0.15
    truncated = ~terminated & (rng.random((length, batch)) < 0.1)
    seq = Transition(
        obs=jnp.zeros((length, batch, 2)),
        action=jnp.asarray(rng.integers(0, 4, (length, batch)), jnp.int32),
        reward=jnp.asarray(reward),
        next_obs=jnp.zeros((length, batch, 2)),
        terminated=jnp.asarray(terminated),
        truncated=jnp.asarray(truncated),
        steps=jnp.ones((length, batch), jnp.int32),
        next_action_mask=jnp.asarray(rng.random((length, batch, 4)) < 0.5),
    )
    rows = jax.jit(sequence_replay.n_step_rows, static_argnums=(1, 2))(seq, burn_in, n, gamma)
    want = numpy_rows(reward, terminated, truncated, burn_in, n, gamma)
    size = (length - burn_in) * batch
    np.testing.assert_allclose(rows.reward, [w[0] for w in want], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rows.steps, [w[1] for w in want])
    np.testing.assert_array_equal(rows.terminated, [w[2] for w in want])
    np.testing.assert_array_equal(rows.truncated, [w[3] for w in want])
    last = np.array([w[4] for w in want])
    b = np.tile(np.arange(batch), length - burn_in)
    np.testing.assert_array_equal(rows.obs, np.arange(size))
    np.testing.assert_array_equal(rows.next_obs, size + (last - burn_in) * batch + b)
    np.testing.assert_array_equal(rows.action, np.asarray(seq.action)[burn_in:].reshape(-1))
    np.testing.assert_array_equal(rows.next_action_mask, np.asarray(seq.next_action_mask)[last, b])
