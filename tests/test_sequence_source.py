"""R2D2-style DQN (a recurrent core with the sequence source): the stored carries are the
network's own, every head trains on sequences, priorities come back per sequence, bad input is
refused by name, and on the T-maze memory reaches the optimum where a feed-forward DQN stays at
the memoryless bound."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import hparams, sum_tree
from qlearn.algos import deep_q, dqn, sequence_source
from qlearn.algos.learners import Update
from qlearn.algos.sources import Drawn
from qlearn.envs import catalog
from qlearn.types import ConfigError

SMALL = dict(
    env_id="TMaze",
    env_kwargs=(("length", 3),),
    core="gru",
    memory_size=16,
    hidden_sizes=(16,),
    num_envs=4,
    total_steps=1_200,
    learning_starts=120,
    buffer_size=400,
    batch_size=4,
    sequence_length=8,
    burn_in=2,
    sequence_overlap=4,
    num_evals=2,
    n_step=2,
)


def test_each_stored_carry_is_the_one_the_acting_network_had():
    """After the warm-up (fixed parameters), every stored step's carry is the network's step
    from the previous stored step (its carry, observation and reset flag), the reset flag marks
    the step after an episode's end, and the observation follows the previous next_obs inside
    an episode."""
    config = dqn.DQNConfig(**SMALL)
    hp = dqn.DQNHParams(gamma=0.9)
    prog = deep_q.program(config, None, None, config.value_head, False, None)
    params = prog.init_params(jax.random.key(1))
    source = sequence_source.sequence_source(prog, hp)
    state, _, _ = jax.jit(source.init)(params, jax.random.key(2), jax.random.key(3))
    steps = state.buffer.steps  # [C, N, ...], written in order while W < C
    written = int(state.buffer.written)
    assert written == 30 and written < state.buffer.capacity
    carry, _ = prog.network.apply(
        params,
        steps.carry[: written - 1].reshape(-1, 16),
        steps.transition.obs[: written - 1].reshape(-1, *prog.obs_shape),
        steps.first[: written - 1].reshape(-1),
    )
    np.testing.assert_allclose(steps.carry[1:written].reshape(-1, 16), carry, rtol=1e-6, atol=1e-7)
    tr = steps.transition
    ended = np.asarray(tr.terminated | tr.truncated)[: written - 1]
    np.testing.assert_array_equal(steps.first[1:written], ended)
    assert ended.any() and np.asarray(steps.first[0]).all()
    same = ~ended[..., None]
    np.testing.assert_array_equal(
        np.where(same, tr.obs[1:written], 0), np.where(same, tr.next_obs[: written - 1], 0)
    )


@pytest.mark.parametrize(
    "change",
    [
        dict(loss="c51", head="categorical", replay="prioritized"),
        dict(loss="iqn", head="iqn", core="lstm"),
        dict(loss="qr", head="quantile", noisy=True, dueling=True),
    ],
)
def test_every_head_trains_on_replayed_sequences(change):
    """A distributional, a sampling and a noisy dueling head each train on sequences: finite
    losses that move, and under prioritised replay the priorities the update sets."""
    config = dqn.DQNConfig(**{**SMALL, **change})
    _, metrics = jax.jit(dqn.make_train(config))(jax.random.key(0), dqn.DQNHParams(gamma=0.9))
    loss = np.asarray(metrics["loss"])
    assert np.all(np.isfinite(loss)) and loss[0] != loss[1]


def test_prioritised_feedback_sets_the_eta_mixture_of_the_rows():
    """The feedback of one update: the sampled slots get (η·max + (1 − η)·mean of the rows'
    priorities + ε)^α."""
    config = dqn.DQNConfig(**{**SMALL, "replay": "prioritized"})
    hp = dqn.DQNHParams(gamma=0.9, per_eta=0.7, per_alpha=0.5, per_eps=0.01)
    prog = deep_q.program(config, None, None, config.value_head, False, None)
    source = sequence_source.sequence_source(prog, hp)
    state, _, _ = jax.jit(source.init)(
        prog.init_params(jax.random.key(1)), jax.random.key(2), jax.random.key(3)
    )
    drawn = Drawn(jnp.array([5, 0, 2, 7]))  # the first sequences of the 4 envs, and the next
    rows = (config.sequence_length - config.burn_in) * 4
    priority = jnp.linspace(0.0, 2.0, rows)
    state = source.feedback(state, drawn, Update({}, priority))
    per = np.asarray(priority).reshape(-1, 4)  # row t·B + b: step t of sequence b
    p = 0.7 * per.max(0) + 0.3 * per.mean(0)
    masses = np.asarray(sum_tree.get(state.buffer.priorities, drawn.index))
    np.testing.assert_allclose(masses, (p + 0.01) ** 0.5, rtol=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(burn_in=8), "burn_in = 8 must be < sequence_length = 8"),
        (dict(sequence_overlap=8), "sequence_overlap = 8 must be < sequence_length"),
        (dict(buffer_size=40), "buffer_size = 40 holds 10 steps .* needs .* = 12"),
        (dict(learning_starts=8), "learning_starts = 8 leaves no whole sequence of 8 steps"),
        (dict(n_step=7), "n_step = 7 must be ≤ sequence_length − burn_in = 6"),
        (dict(replay="coverage"), "sequence replay is 'uniform' or 'prioritized'"),
        (dict(diagnostics=True), "config.diagnostics = True is not available with a recurrent"),
        (dict(intervention="reset"), "config.intervention = 'reset' is not available"),
        (dict(core="rnn"), "config.core = 'rnn' must be 'none' or one of gru, lstm"),
        (dict(network="linear"), "config.core needs config.network"),
        (dict(value_rescaling=True, loss="qr", head="quantile"), "value_rescaling"),
    ],
)
def test_bad_sequence_configs_are_refused_by_name(change, message):
    with pytest.raises(ConfigError, match=message):
        dqn.DQNConfig(**{**SMALL, **change})


def test_eta_outside_zero_one_is_refused():
    for eta in (-0.1, 1.5):
        with pytest.raises(hparams.HParamError, match="per_eta"):
            hparams.validate(dqn.DQNHParams(per_eta=eta))


T_MAZE = dict(
    env_id="TMaze",
    env_kwargs=(("length", 4),),
    memory_size=64,
    hidden_sizes=(64,),
    num_envs=8,
    total_steps=20_000,
    learning_starts=1_000,
    buffer_size=20_000,
    batch_size=16,
    sequence_length=20,
    burn_in=4,
    sequence_overlap=10,
    num_evals=10,
    n_step=3,
)


def test_r2d2_reaches_the_t_maze_optimum_and_feed_forward_dqn_stays_at_the_memoryless_bound():
    """T-maze N = 4, γ = 0.9, 20,000 steps (experiments/memory.py's R2D2 cell): the GRU
    agent's last greedy (undiscounted) return is the optimum 1 (key 0), bitwise the same when
    run again; a feed-forward DQN's never exceeds the memoryless bound ½."""
    hp = dqn.DQNHParams(gamma=0.9)
    recurrent = jax.jit(dqn.make_train(dqn.DQNConfig(**T_MAZE, core="gru")))
    _, m = recurrent(jax.random.key(0), hp)
    _, again = recurrent(jax.random.key(0), hp)
    optimum = catalog.tmaze_optimal_return(4)
    np.testing.assert_allclose(m["eval_return"][-1], optimum, rtol=1e-5)
    jax.tree.map(np.testing.assert_array_equal, m, again)
    _, ff = jax.jit(dqn.make_train(dqn.DQNConfig(**T_MAZE)))(jax.random.key(0), hp)
    assert np.all(np.asarray(ff["eval_return"]) <= catalog.tmaze_memoryless_bound(4) + 1e-5)


def test_the_papers_settings_make_a_valid_program_on_minatar():
    """dqn.R2D2 and R2D2_HPARAMS on MinAtar Breakout (its 10×10 frames take the small CNN
    rather than the Nature CNN's 36×36 minimum; a buffer that fits here): the config and
    hyperparameters validate and the program traces, with an LSTM of 512."""
    config = dqn.DQNConfig(
        **(dqn.R2D2 | {"network": "cnn"}),
        env_id="Breakout-MinAtar",
        buffer_size=16_000,
        learning_starts=1_280,
        num_envs=16,
        total_steps=20_000,
        num_evals=2,
    )
    hp = dqn.DQNHParams(**dqn.R2D2_HPARAMS)
    hparams.validate(hp)
    config.validate_hparams(hp)
    _, metrics = jax.eval_shape(dqn.make_train(config), jax.random.key(0), hp)
    assert metrics["eval_return"].shape == (2,)
    prog = deep_q.program(config, None, None, config.value_head, False, None)
    assert prog.recurrent and prog.network.memory_size == 512 and prog.network.core == "lstm"
