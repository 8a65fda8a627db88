"""Recurrent Q-networks: the reset contract, sequence unrolling for the losses, the values a
recurrent agent acts on, and the checks of its fields."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import heads, networks, recurrent
from qlearn.algos import pqn, rollout_source

OBS, ACTIONS = (3,), 4


def make(core, head=heads.SCALAR):
    net = recurrent.build(
        "mlp", ACTIONS, OBS, core=core, memory_size=8, hidden_sizes=(16,), head=head
    )
    params = recurrent.init_params(net, jax.random.key(0), OBS)
    return net, params


@pytest.mark.parametrize("core", recurrent.CORES)
def test_a_reset_at_an_episode_start_gives_bitwise_the_episode_alone(core):
    """An episode run after 5 steps of another history, its carry reset at its first step,
    gives the same outputs, bit for bit, as the episode run from the initial carry."""
    net, params = make(core)
    before, episode = jax.random.normal(jax.random.key(1), (2, 5, 2, *OBS))
    obs = jnp.concatenate([before, episode])  # [10, B=2, 3]
    reset = jnp.zeros((10, 2), bool).at[5].set(True)
    _, out = recurrent.unroll(net.apply, params, recurrent.initial_carry(net, 2), obs, reset)
    alone_reset = jnp.zeros((5, 2), bool).at[0].set(True)
    _, alone = recurrent.unroll(
        net.apply, params, recurrent.initial_carry(net, 2), episode, alone_reset
    )
    np.testing.assert_array_equal(out[5:], alone)
    # without the reset the history shows: the memory is used
    _, remembered = recurrent.unroll(
        net.apply, params, recurrent.initial_carry(net, 2), obs, jnp.zeros((10, 2), bool)
    )
    assert not np.allclose(remembered[5:], alone)


def test_sequence_q_function_unrolls_time_major_rows_and_passes_gradients():
    net, params = make("gru")
    q_fn = networks.QFunction(net.apply)
    steps, batch = 6, 3
    obs = jax.random.normal(jax.random.key(2), (steps, batch, *OBS))
    reset = jax.random.bernoulli(jax.random.key(3), 0.3, (steps, batch))
    carry = recurrent.initial_carry(net, batch) + 0.5  # a stored carry, not the initial one
    _, ref = recurrent.unroll(net.apply, params, carry, obs, reset)
    seq = recurrent.sequence_q_function(q_fn, carry, reset)
    flat = seq(params, obs.reshape(steps * batch, *OBS))  # the losses' view: [T·B, A]
    np.testing.assert_allclose(flat, ref.reshape(steps * batch, ACTIONS), rtol=1e-6)

    def loss(p):
        return jnp.mean(seq(p, obs.reshape(steps * batch, *OBS)) ** 2)

    grads = jax.grad(loss)(params)["params"]
    core_grad = jax.tree.leaves(grads["GRUCell_0"])
    assert all(np.all(np.isfinite(g)) for g in core_grad)
    assert any(np.any(g != 0) for g in core_grad)  # the memory itself is trained


def stream(steps, batch, key):
    """A stream of observations with its resets and next observations: an episode of each
    sequence ends at step 3 (env 0 truncated, its final observation new), where the next
    observation begins a new episode."""
    k = jax.random.split(jax.random.key(key), 3)
    obs = jax.random.normal(k[0], (steps + 1, batch, *OBS))
    reset = jnp.zeros((steps + 1, batch), bool).at[4].set(True)
    next_obs = obs[1:].at[3].set(jax.random.normal(k[1], (batch, *OBS)))
    return obs[:steps], next_obs, reset[:steps], obs[steps]


@pytest.mark.parametrize("burn_in", [0, 2])
def test_rows_q_function_gives_the_unroll_and_the_step_ahead(burn_in):
    """Rows t·B + b are the unroll after the burn-in; the rows ahead equal the unroll's next
    row inside an episode, and at the episode's end the old carry's value of its final
    observation (not the reset row)."""
    net, params = make("gru")
    q_fn = networks.QFunction(net.apply)
    steps, batch = 7, 3
    obs, next_obs, reset, _ = stream(steps, batch, 6)
    carry = recurrent.initial_carry(net, batch) + 0.3
    seqs = recurrent.Sequences(obs, next_obs, reset, carry, burn_in)
    rows_fn = recurrent.rows_q_function(q_fn, seqs)
    trained = steps - burn_in
    size = trained * batch
    _, ref = recurrent.unroll(net.apply, params, carry, obs, reset)
    np.testing.assert_allclose(
        rows_fn.apply(params, jnp.arange(size)), ref[burn_in:].reshape(size, -1), rtol=1e-5
    )
    ahead = np.asarray(rows_fn.apply(params, size + jnp.arange(size))).reshape(trained, batch, -1)
    for t in range(burn_in, steps - 1):
        if t != 3:  # inside an episode: the next row of the unroll
            np.testing.assert_allclose(ahead[t - burn_in], ref[t + 1], rtol=1e-5)
    carry_3, _ = recurrent.unroll(net.apply, params, carry, obs[:4], reset[:4])
    _, final = net.apply(params, carry_3, next_obs[3], jnp.zeros(batch, bool))
    np.testing.assert_allclose(ahead[3 - burn_in], final, rtol=1e-5)
    assert not np.allclose(ahead[3 - burn_in], ref[4])
    table = np.concatenate([ref[burn_in:].reshape(size, -1), ahead.reshape(size, -1)])
    rows = np.array([size + 2, 1, 0, 2 * size - 1])  # any rows, in any order
    np.testing.assert_allclose(rows_fn.apply(params, jnp.asarray(rows)), table[rows], rtol=1e-5)


def test_burn_in_passes_no_gradient_into_the_burnt_in_steps():
    """The loss's gradient with respect to the burn-in observations and the stored carry is
    zero, and not zero without a burn-in; the trained steps' observations get a gradient."""
    net, params = make("lstm")
    q_fn = networks.QFunction(net.apply)
    steps, batch, burn_in = 6, 2, 3
    obs, next_obs, reset, _ = stream(steps, batch, 7)
    carry = jax.tree.map(lambda c: c + 0.2, recurrent.initial_carry(net, batch))

    def grads(burn, params=params):
        def loss(obs, carry):
            seqs = recurrent.Sequences(obs, next_obs, reset, carry, burn)
            size = (steps - burn) * batch
            return jnp.sum(recurrent.rows_q_function(q_fn, seqs)(params, jnp.arange(size)) ** 2)

        return jax.grad(loss, (0, 1))(obs, carry)

    g_obs, g_carry = grads(burn_in)
    assert np.all(np.asarray(g_obs[:burn_in]) == 0)
    assert all(np.all(np.asarray(c) == 0) for c in jax.tree.leaves(g_carry))
    assert np.all(np.abs(np.asarray(g_obs[burn_in:])).sum(axis=-1) > 0)
    g_obs, g_carry = grads(0)
    assert np.abs(np.asarray(g_obs[:burn_in])).sum() > 0
    assert any(np.abs(np.asarray(c)).sum() > 0 for c in jax.tree.leaves(g_carry))


def test_step_values_are_the_heads_expected_values():
    head = heads.Categorical(11)
    net, params = make("lstm", head)
    support = jnp.linspace(-1.0, 1.0, 11)
    q_fn = networks.QFunction(net.apply, head, support)
    obs = jax.random.normal(jax.random.key(4), (5, *OBS))
    memory = (recurrent.initial_carry(net, 5), jnp.ones((5,), bool))
    q, carry = recurrent.step_values(q_fn, params, memory, obs)
    new_carry, out = net.apply(params, memory[0], obs, memory[1])
    logits = np.asarray(out).reshape(5, ACTIONS, 11)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(q, probs @ np.asarray(support), rtol=1e-5, atol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, carry, new_carry)


def test_sequence_targets_bootstrap_from_the_carry_that_saw_the_episode():
    """PQN-RNN's targets against a step-by-step loop: the value of each next state is the
    network's step on it from the carry after o_t — on a truncated step's final observation,
    before the reset — and Q(λ) runs over the rollout as for a feed-forward network."""
    from types import SimpleNamespace

    from qlearn.types import Transition

    net, params = make("gru")
    steps, n = 5, 2
    k = jax.random.split(jax.random.key(5), 3)
    obs = jax.random.normal(k[0], (steps, n, *OBS))
    next_obs = jnp.concatenate([obs[1:], jax.random.normal(k[1], (1, n, *OBS))])
    final = jax.random.normal(k[2], (n, *OBS))
    next_obs = next_obs.at[2, 0].set(final[0])  # env 0's episode is cut at step 2 ...
    truncated = jnp.zeros((steps, n), bool).at[2, 0].set(True)
    terminated = jnp.zeros((steps, n), bool).at[3, 1].set(True)  # ... env 1's ends at 3
    first = jnp.zeros((steps, n), bool).at[3, 0].set(True).at[4, 1].set(True)
    reward = jnp.arange(steps * n, dtype=jnp.float32).reshape(steps, n) / 10
    action = jnp.zeros((steps, n), jnp.int32)
    tr = Transition(obs, action, reward, next_obs, terminated, truncated, jnp.ones_like(action))
    carry0 = recurrent.initial_carry(net, n) + 0.1
    prog = SimpleNamespace(q_function=lambda hp: networks.QFunction(net.apply))
    hp = SimpleNamespace(gamma=0.9, lam=0.7)
    batch = rollout_source.sequence_batch(prog, hp, params, tr, (carry0, first), first)

    carry, q_next = carry0, []
    for t in range(steps):
        carry, _ = net.apply(params, carry, obs[t], first[t])
        _, q = net.apply(params, carry, next_obs[t], jnp.zeros((n,), bool))
        q_next.append(np.max(np.asarray(q), axis=-1))
    g = np.zeros((steps, n))
    for j in range(n):
        ahead = q_next[-1][j]
        for t in reversed(range(steps)):
            lam = 0.0 if truncated[t, j] else hp.lam
            cont = (1 - lam) * q_next[t][j] + lam * ahead
            g[t, j] = reward[t, j] + (0.0 if terminated[t, j] else hp.gamma * cont)
            ahead = g[t, j]
    np.testing.assert_allclose(batch.target, g, rtol=1e-5)
    np.testing.assert_array_equal(batch.memory[1], first)


def test_recurrent_fields_are_refused_by_name():
    with pytest.raises(ValueError, match=r"config\.core"):
        recurrent.build("mlp", ACTIONS, OBS, core="rnn", memory_size=8)
    with pytest.raises(ValueError, match=r"config\.memory_size"):
        recurrent.build("mlp", ACTIONS, OBS, core="gru", memory_size=0)
    with pytest.raises(ValueError, match=r"config\.core"):
        recurrent.build("linear", ACTIONS, OBS, core="gru", memory_size=8)
    base = dict(env_id="TMaze", core="gru", num_envs=4, rollout_steps=8, total_steps=3200)
    with pytest.raises(ValueError, match="num_minibatches"):
        pqn.PQNConfig(**base, num_minibatches=8)
    with pytest.raises(ValueError, match="diagnostics"):
        pqn.PQNConfig(**base, num_minibatches=2, diagnostics=True)
    with pytest.raises(ValueError, match=r"config\.core"):
        pqn.PQNConfig(**(base | {"core": "transformer"}), num_minibatches=2)


@pytest.mark.parametrize("core", recurrent.CORES)
def test_initialising_runs_vmapped_draws_no_qr_decomposition(core):
    """A sweep initialises its runs' networks inside one vmapped program; a batched QR there
    (flax's orthogonal recurrent kernels) deadlocked XLA:CPU's thread pool, so the cores'
    recurrent kernels are drawn without one (recurrent.RECURRENT_INIT)."""
    net = recurrent.build("mlp", ACTIONS, OBS, core=core, memory_size=8, hidden_sizes=(16,))
    keys = jax.random.split(jax.random.key(0), 4)
    jaxpr = jax.make_jaxpr(jax.vmap(lambda k: recurrent.init_params(net, k, OBS)))(keys)
    assert not re.search(r"\b(qr|geqrf|householder_product)\b", str(jaxpr))
