import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from gymnax.environments.classic_control.cartpole import EnvState as CartPoleState
from user_losses import my_zero_loss

from qlearn import dp, heads, hparams, losses, networks, noisynet, policies, sum_tree, sweep
from qlearn import return_distributions as rd
from qlearn.algos import deep_q, dqn, learners, probes, rollout
from qlearn.types import ConfigError, Transition


def test_update_equals_watkins_tabular_q_learning():
    """One-hot features, batch 1, plain SGD, no target network: DQN's update is Watkins'."""
    num_states, num_actions, alpha, gamma = 5, 3, 0.1, 0.9
    net = networks.LinearQNetwork(num_actions)
    params = net.init(jax.random.key(0), jnp.zeros((1, num_states)))
    table = np.random.default_rng(0).normal(size=(num_states, num_actions)).astype(np.float32)
    params = {"params": {"Dense_0": {"kernel": jnp.asarray(table)}}}
    loss_fn = losses.resolve("mse", double_q=False)
    # The MSE loss is δ², so its gradient is −2δ∇q̂: SGD with step α/2 is Watkins' step α.
    optimizer = optax.sgd(alpha / 2)
    hp = dqn.DQNHParams(gamma=gamma)
    one_hot = lambda s: jax.nn.one_hot(jnp.array([s]), num_states)
    for s, a, r, s_next, terminal in [(1, 2, 0.5, 3, False), (3, 0, -1.0, 4, True)]:
        batch = Transition(
            one_hot(s),
            jnp.array([a]),
            jnp.array([r]),
            one_hot(s_next),
            jnp.array([terminal]),
            jnp.array([False]),
            jnp.array([1]),
        )
        params, _, _ = learners.gradient_step(
            net.apply, loss_fn, optimizer, params, params, optimizer.init(params), batch, hp
        )
        expected = table.copy()
        bootstrap = 0.0 if terminal else gamma * table[s_next].max()
        expected[s, a] += alpha * (r + bootstrap - table[s, a])
        np.testing.assert_allclose(params["params"]["Dense_0"]["kernel"], expected, rtol=1e-6)
        table = expected


def test_sweep_compiles_once_and_hparams_are_traced(tiny_grid_fn):
    keys = sweep.seed_keys(0, 2)
    hp_a = hparams.grid(dqn.DQNHParams, {"lr": [1e-3, 3e-3], "gamma": [0.99]})
    hp_b = hparams.grid(dqn.DQNHParams, {"lr": [2e-3, 5e-4], "gamma": [0.9]})
    before = len(tiny_grid_fn.traces)
    _, m_a = tiny_grid_fn(keys, hparams.to_arrays(hp_a))
    _, m_b = tiny_grid_fn(keys, hparams.to_arrays(hp_b))
    assert len(tiny_grid_fn.traces) - before <= 1  # new values, same shapes: no retrace
    assert m_a["eval_return"].shape == (2, 2, 4)
    assert not np.array_equal(m_a["loss"], m_b["loss"])  # the new values were used


@pytest.fixture(scope="module")
def four_seeds(tiny_grid_fn):
    hp = hparams.to_arrays(hparams.grid(dqn.DQNHParams, {"lr": [1e-3, 3e-3]}))
    return hp, tiny_grid_fn(sweep.seed_keys(0, 4), hp)[1]


def test_seeds_same_and_different(tiny_grid_fn, four_seeds):
    hp, m = four_seeds
    again = tiny_grid_fn(sweep.seed_keys(0, 4), hp)[1]
    for name in m:
        assert np.asarray(m[name]).tobytes() == np.asarray(again[name]).tobytes(), name
    loss = np.asarray(m["loss"])
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(loss[:, i], loss[:, j]), (i, j)


def test_seed_does_not_depend_on_batch_size(tiny_grid_fn, four_seeds):
    """Seed i's key is fold_in(key(base), i), whatever runs beside it. On CPU, seed 2 inside a
    batch of 2 gives bitwise its metrics inside a batch of 4. A batch of exactly 1 compiles to a
    program without the vmapped axis: float32 rounding then differs by a few ulp (measured
    ≤ 5e-7 relative), while the discrete outcomes of this short run are identical."""
    hp, m = four_seeds
    keys = sweep.seed_keys(0, 4)
    assert (
        jax.random.key_data(keys[2]).tolist()
        == jax.random.key_data(jax.random.fold_in(jax.random.key(0), 2)).tolist()
    )
    pair = tiny_grid_fn(keys[2:4], hp)[1]
    alone = tiny_grid_fn(keys[2:3], hp)[1]
    for name in m:
        beside = np.asarray(m[name])[:, 2:3]
        assert beside.tobytes() == np.asarray(pair[name])[:, :1].tobytes(), name
        if name in ("env_steps", "eval_return", "train_return", "train_episodes", "epsilon"):
            assert beside.tobytes() == np.asarray(alone[name]).tobytes(), name
        else:
            np.testing.assert_allclose(
                np.asarray(alone[name], float), beside.astype(float), rtol=5e-6, err_msg=name
            )


def cartpole_state(obs: np.ndarray) -> CartPoleState:
    """The CartPole state an observation [N, 4] shows (the observation is the full state)."""
    x, x_dot, theta, theta_dot = (jnp.asarray(obs[:, i]) for i in range(4))
    return CartPoleState(
        time=jnp.zeros(len(obs), jnp.int32), x=x, x_dot=x_dot, theta=theta, theta_dot=theta_dot
    )


@pytest.fixture(scope="module")
def truncating_run(tiny_config):
    """One run on CartPole with a 7-step time limit, short enough that the buffer keeps all."""
    config = dataclasses.replace(
        tiny_config, max_episode_steps=7, total_steps=600, learning_starts=100
    )
    state, metrics = jax.jit(dqn.make_train(config))(jax.random.key(3), dqn.DQNHParams())
    return config, state, metrics


def test_truncation_stores_true_final_observation(truncating_run):
    config, state, _ = truncating_run
    buf = state.source.buffer
    n = int(buf.size)
    assert n == config.actual_total_steps  # nothing overwritten
    tr = jax.tree.map(lambda x: np.asarray(x[:n]), buf.storage.transition)
    env, params = deep_q.make_env(config)
    # Every stored next_obs is the CartPole successor of (obs, action), also at a time limit.
    s = cartpole_state(tr.obs)
    successor = jax.vmap(env.step_env, (None, 0, 0, None))(
        jax.random.key(0), s, jnp.asarray(tr.action), params
    )[0]
    np.testing.assert_allclose(tr.next_obs, successor, rtol=1e-6, atol=1e-6)
    truncated_only = tr.truncated & ~tr.terminated
    assert truncated_only.sum() > 10
    # ...and the next stored obs of that env is a fresh reset, not next_obs
    idx = np.flatnonzero(truncated_only)
    idx = idx[idx + config.num_envs < n]
    assert not np.allclose(tr.obs[idx + config.num_envs], tr.next_obs[idx])
    # termination is only flagged for real terminal states
    assert not np.any(np.asarray(env.is_terminated(cartpole_state(tr.next_obs[idx]), params)))


def test_episode_returns_count_completed_episodes_only(truncating_run):
    config, state, metrics = truncating_run
    n_env, n = config.num_envs, int(state.source.buffer.size)
    tr = jax.tree.map(lambda x: np.asarray(x[:n]), state.source.buffer.storage.transition)
    reward = tr.reward.reshape(-1, n_env)  # [vector step, env]: insertion order
    done = (tr.terminated | tr.truncated).reshape(-1, n_env)
    # interval k ends after this many vector steps
    warm = config.learning_starts // n_env
    per = config.steps_per_eval // n_env
    ends = [warm + per * (k + 1) for k in range(config.num_evals)]
    returns, running = [[] for _ in ends], np.zeros(n_env)
    for t in range(reward.shape[0]):
        running += reward[t]
        if t >= warm:  # episodes that end in the warm-up belong to no interval
            k = next(i for i, e in enumerate(ends) if t < e)
            returns[k].extend(running[done[t]].tolist())
        running[done[t]] = 0.0
    np.testing.assert_array_equal(metrics["train_episodes"], [len(r) for r in returns])
    np.testing.assert_allclose(metrics["train_return"], [np.mean(r) for r in returns], rtol=1e-6)
    assert np.all(np.asarray(metrics["train_return"]) <= 7)  # the time limit


def test_the_first_interval_counts_its_own_episodes_only(tiny_config):
    """A 5-step time limit and 1,000 warm-up steps: ≈ 200 episodes end in the warm-up; the first
    interval's 400 env steps can end at most 400 / 1 episodes, the same order as the others."""
    config = dataclasses.replace(
        tiny_config, max_episode_steps=5, learning_starts=1_000, total_steps=2_600
    )
    _, m = jax.jit(dqn.make_train(config))(jax.random.key(0), dqn.DQNHParams())
    episodes = np.asarray(m["train_episodes"])
    assert config.steps_per_eval == 400
    assert episodes[0] <= config.steps_per_eval // 5 + config.num_envs, episodes
    assert abs(int(episodes[0]) - int(episodes[1])) <= 0.2 * episodes[1], episodes


def test_dqn_acts_and_bootstraps_over_available_actions_only():
    """MaximizationBias: state A has 2 of the 10 actions B has. Every visit DQN makes is to an
    available action (before, 13% of its visits to A were on unavailable ones), and the replay
    stores the mask of each next state for the targets' max."""
    from qlearn.envs import catalog

    config = dqn.DQNConfig(
        env_id="MaximizationBias",
        network="linear",
        num_envs=4,
        total_steps=4_000,
        learning_starts=400,
        buffer_size=4_000,
        batch_size=32,
        num_evals=4,
        eval_episodes=4,
    )
    hp = dqn.DQNHParams(gamma=0.9, eps_end=0.3)
    state, _ = jax.jit(dqn.make_train(config))(jax.random.key(0), hp)
    _, mdp = deep_q.make_env(config)
    mask = np.asarray(mdp.action_mask)
    visits = np.asarray(state.probes["finite_mdp"].visits)
    assert visits.sum() > 3_000 and visits[~mask].sum() == 0
    assert visits[catalog.MAXBIAS_A][mask[catalog.MAXBIAS_A]].min() > 0
    stored = jax.tree.map(np.asarray, state.source.buffer.storage.transition)
    np.testing.assert_array_equal(
        stored.next_action_mask[: int(state.source.buffer.size)],
        mask[np.argmax(stored.next_obs[: int(state.source.buffer.size)], -1)],
    )


def test_record_ignores_unfinished_episodes():
    stats = rollout.init_episode_stats(2)
    stats = rollout.record(stats, jnp.array([1.0, 1.0]), jnp.array([False, False]))
    assert np.isnan(rollout.mean_completed_return(stats))  # nothing completed yet
    stats = rollout.record(stats, jnp.array([1.0, 5.0]), jnp.array([True, False]))
    stats = rollout.record(stats, jnp.array([1.0, 1.0]), jnp.array([False, True]))
    assert int(stats.completed_count) == 2
    np.testing.assert_allclose(rollout.mean_completed_return(stats), (2.0 + 7.0) / 2)
    np.testing.assert_allclose(stats.returns, [1.0, 0.0])
    stats = rollout.clear_completed(stats)
    assert np.isnan(rollout.mean_completed_return(stats))
    np.testing.assert_allclose(stats.returns, [1.0, 0.0])  # episodes in progress survive


def test_user_loss_plugs_in(tiny_config):
    config = dataclasses.replace(
        tiny_config, loss=my_zero_loss, total_steps=600, learning_starts=100
    )
    state, metrics = jax.jit(dqn.make_train(config))(jax.random.key(0), dqn.DQNHParams())
    np.testing.assert_array_equal(metrics["loss"], 0.0)
    np.testing.assert_array_equal(metrics["my_stat"], 7.0)  # a loss's own aux is logged
    assert np.all(np.isnan(metrics["td_abs"]))  # standard entries it does not report: NaN
    # a zero loss leaves θ at its initial value; θ⁻ tracks it
    jax.tree.map(
        lambda p, t: np.testing.assert_allclose(p, t, rtol=1e-6),
        state.learner.params,
        state.learner.target_params,
    )


def test_losses_compared_in_one_compile(tiny_config):
    """config.loss as a tuple: ``loss_index`` is traced, so one program trains both."""
    config = dataclasses.replace(
        tiny_config, loss=("mse", my_zero_loss), total_steps=600, learning_starts=100
    )
    hp = hparams.grid(dqn.DQNHParams, {"loss_index": [0, 1]})
    _, metrics = jax.jit(jax.vmap(dqn.make_train(config), (None, 0)))(
        jax.random.key(0), hparams.to_arrays(hp)
    )
    assert np.all(metrics["loss"][0] > 0) and np.all(np.isfinite(metrics["td_abs"][0]))
    np.testing.assert_array_equal(metrics["loss"][1], 0.0)
    assert np.all(np.isnan(metrics["my_stat"][0])) and np.all(metrics["my_stat"][1] == 7.0)
    with pytest.raises(hparams.HParamError, match="'loss_index' = 2"):
        config.validate_hparams(hparams.grid(dqn.DQNHParams, {"loss_index": [0, 2]}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"env_id": "CartPol-v1"}, "did you mean CartPole-v1"),
        ({"batch_size": 5000}, "batch_size = 5000 must be ≤ buffer_size"),
        ({"learning_starts": 3000}, "learning_starts = 3000 must be < total_steps"),
        ({"total_steps": 210}, "does not cover one update"),
        ({"num_envs": 0}, "num_envs = 0 must be an integer ≥ 1"),
        ({"loss": "l1"}, "config.loss = 'l1'"),
        ({"activation": "sigmoid"}, "config.activation"),
        ({"env_id": "Garnet", "env_kwargs": {"n_stats": 3}}, "Garnet has no parameter n_stats"),
        # n-step with no warm-up: the first updates would sample unfilled slots
        ({"learning_starts": 0, "n_step": 3}, "without a whole 3-step item at the first update"),
        ({"head": "gaussian"}, "config.head = 'gaussian' must be one of scalar, categorical"),
        ({"loss": "c51"}, "config.loss = 'c51' needs config.head = 'categorical'"),
        ({"head": "quantile"}, "config.loss = 'huber' needs config.head = 'scalar'"),
        ({"head": "quantile", "loss": ("qr", "c51")}, "'c51' needs config.head = 'categ"),
        ({"head": "categorical", "loss": "c51", "num_atoms": 1}, "num_atoms = 1 must be an"),
        ({"head": "quantile", "loss": "qr", "num_quantiles": 1}, "num_quantiles = 1 must be"),
        ({"head": "histogram", "loss": "c51"}, "'c51' needs config.head = 'categorical'"),
        ({"loss": "two_hot"}, "'two_hot' needs config.head = 'histogram'"),
        ({"head": "quantile", "loss": "iqn"}, "'iqn' needs config.head = 'iqn'"),
        ({"head": "iqn", "loss": "iqn", "network": "linear"}, "'iqn' needs config.network"),
        ({"network": "linear", "dueling": True}, "config.dueling needs config.network = 'mlp'"),
        (
            {"env_id": "MaximizationBias", "loss": ("huber", "munchausen")},
            "'munchausen' needs the action mask of each replayed state",
        ),
    ],
)
def test_config_errors_name_the_field(change, message):
    from conftest import TINY

    with pytest.raises(ConfigError, match=message):
        dqn.DQNConfig(**{**TINY, **change})


def test_config_is_hashable_and_frozen(tiny_config):
    assert hash(tiny_config) == hash(dqn.DQNConfig(**dataclasses.asdict(tiny_config)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny_config.num_envs = 3


@pytest.mark.parametrize("replay", ["uniform", "prioritized"])
def test_on_a_finite_mdp_the_true_error_is_logged_and_falls(replay):
    """Linear DQN on one-hot Garnet features, with uniform or prioritised replay: the true VE
    against q* shrinks while the TD loss does not, and the greedy policy becomes optimal (its
    exact value J equals J*) at most evaluation points (q* has near-ties here, so one point
    may pick a near-optimal action)."""
    config = dqn.DQNConfig(
        replay=replay,
        env_id="Garnet",
        env_kwargs={"n_states": 10, "n_actions": 3, "branching": 3, "seed": 0},
        max_episode_steps=50,
        network="linear",
        num_envs=4,
        total_steps=8000,
        learning_starts=400,
        buffer_size=4000,
        batch_size=32,
        num_evals=8,
        eval_episodes=4,
    )
    hp = dqn.DQNHParams(lr=0.05, gamma=0.9, eps_end=0.3, target_tau=0.1)
    state, metrics = jax.jit(dqn.make_train(config))(jax.random.key(0), hp)
    # the last interval's replayed loss weights: one per sample for uniform replay, the
    # importance weights (≤ 1) for prioritised; on (s, a) pairs the buffer holds
    samples = config.iters_per_eval * config.updates_per_train * config.batch_size
    replayed = np.asarray(state.probes["finite_mdp"].replayed)
    if replay == "uniform":
        assert replayed.sum() == samples
    else:
        assert 0.2 * samples < replayed.sum() < samples
    stored = np.zeros_like(replayed)
    buffer = state.source.buffer.storage
    np.add.at(stored, (np.asarray(buffer.state), np.asarray(buffer.transition.action)), 1)
    assert np.all(stored[replayed > 0] > 0)
    tv = np.asarray(metrics["replay_tv"])
    assert np.all((tv >= 0) & (tv <= 1)) and np.all(np.isfinite(metrics["ve_replayed"]))
    ve = np.asarray(metrics["ve_behaviour"])
    assert ve[-1] < 0.05 * ve[0]
    assert np.asarray(metrics["ve_empirical"])[-1] < 0.05 * np.asarray(metrics["ve_empirical"])[0]
    assert metrics["loss"][-1] > 0.2 * metrics["loss"][0]  # the loss is no measure of the error
    _, mdp = deep_q.make_env(config)
    q_star, _ = dp.value_iteration(mdp, 0.9)
    best = dp.policy_value(mdp, dp.greedy_policy(q_star), 0.9)
    optimal = np.isclose(np.asarray(metrics["greedy_value"]), best, rtol=1e-5)
    assert optimal.sum() > len(optimal) / 2, metrics["greedy_value"]


def test_n_step_replay_stores_discounted_sums_up_to_episode_ends(tiny_config):
    """CartPole pays 1 per step: a 3-step transition holds 1 + γ + γ², a shorter one ends an
    episode (terminated or truncated) at its last step."""
    config = dataclasses.replace(
        tiny_config, n_step=3, max_episode_steps=7, total_steps=600, learning_starts=100
    )
    hp = dqn.DQNHParams(gamma=0.9)
    state, metrics = jax.jit(dqn.make_train(config))(jax.random.key(1), hp)
    assert np.all(np.isfinite(metrics["loss"]))
    n = int(state.source.buffer.size)
    assert n == config.actual_total_steps - 2 * config.num_envs  # the last 2 steps are pending
    tr = jax.tree.map(lambda x: np.asarray(x[:n]), state.source.buffer.storage.transition)
    np.testing.assert_allclose(tr.reward, [(1 - 0.9**m) / (1 - 0.9) for m in tr.steps], rtol=1e-6)
    short = tr.steps < 3
    assert short.any() and np.all(tr.terminated[short] | tr.truncated[short])
    assert np.all(tr.steps >= 1)


def test_target_update_moves_the_target_toward_the_online_net_on_its_period():
    """θ⁻ ← (1 − τ)θ⁻ + τθ on multiples of the period (a swapped pair of arguments would move the
    online values toward the target's instead)."""
    online, target = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([10.0, 20.0])}
    hp = hparams.to_arrays(dqn.DQNHParams(target_tau=0.25, target_period=2))
    moved = learners.update_target(online, target, jnp.int32(4), hp)
    np.testing.assert_allclose(moved["w"], [0.75 * 10 + 0.25 * 1, 0.75 * 20 + 0.25 * 2])
    kept = learners.update_target(online, target, jnp.int32(3), hp)
    np.testing.assert_array_equal(kept["w"], target["w"])


def test_no_target_network_bootstraps_from_the_online_net(tiny_config):
    """target_network=False is bitwise the hard update after every step (τ = 1, period 1: θ⁻ is θ
    at each update) and differs from a slow target (τ = 0.001)."""
    hp = dqn.DQNHParams(lr=3e-3)

    def run(config, **changes):
        return jax.jit(dqn.make_train(config))(jax.random.key(1), hp.replace(**changes))

    config = dataclasses.replace(tiny_config, double_q=False)
    _, none = run(dataclasses.replace(config, target_network=False))
    _, hard = run(config, target_tau=1.0, target_period=1)
    _, slow = run(config, target_tau=0.001, target_period=1)
    for name in ("loss", "q_mean", "target_mean"):
        np.testing.assert_array_equal(none[name], hard[name])
    assert not np.allclose(none["target_mean"], slow["target_mean"])


def numpy_clipped_adam(grads, lr, max_norm, b1=0.9, b2=0.999, eps=1e-8):
    """Adam (optax's defaults) on gradients clipped to a global norm, by hand: the updates."""
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        g = g * min(1.0, max_norm / np.linalg.norm(g))
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        out.append(-lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps))
    return out


def test_optimizer_clips_the_global_norm_before_adam():
    """A huge first gradient: after clipping to norm 1 the second Adam step still moves against
    it; unclipped, its second moment would swamp the second gradient."""
    grads = [np.array([300.0, -400.0], np.float32), np.array([-0.3, 0.1], np.float32)]
    hp = hparams.to_arrays(dqn.DQNHParams(lr=0.1, max_grad_norm=1.0))
    opt = learners.make_optimizer(hp)
    params = {"w": jnp.zeros(2)}
    state = opt.init(params)
    expected = numpy_clipped_adam(grads, 0.1, 1.0)
    for g, e in zip(grads, expected, strict=True):
        update, state = opt.update({"w": jnp.asarray(g)}, state, params)
        np.testing.assert_allclose(update["w"], e, rtol=1e-4)
    unclipped = numpy_clipped_adam(grads, 0.1, np.inf)[1]
    assert not np.allclose(expected[1], unclipped, rtol=1e-2)


def test_the_epsilon_schedule_drives_the_actions_inside_the_loop(tiny_config):
    """ε from 1 to 0 over the first 20% of the steps, with a network that does not learn (lr
    1e-12): stored actions agree with the greedy ones about half the time at first (random),
    always after the decay."""
    config = dataclasses.replace(tiny_config, buffer_size=4_000)
    hp = dqn.DQNHParams(lr=1e-12, eps_start=1.0, eps_end=0.0, eps_decay_fraction=0.2)
    state, metrics = jax.jit(dqn.make_train(config))(jax.random.key(2), hp)
    n = int(state.source.buffer.size)
    tr = jax.tree.map(lambda x: np.asarray(x[:n]), state.source.buffer.storage.transition)
    greedy = np.asarray(
        jnp.argmax(deep_q.make_network(config, 2, (4,)).apply(state.learner.params, tr.obs), -1)
    )
    steps = np.arange(n) // config.num_envs * config.num_envs  # env steps before each item
    early, late = steps < 0.05 * config.total_steps, steps >= 0.2 * config.total_steps
    assert 0.35 < np.mean(tr.action[early] == greedy[early]) < 0.65
    assert np.mean(tr.action[late] == greedy[late]) == 1.0
    np.testing.assert_allclose(metrics["epsilon"], 0.0)  # every evaluation is after the decay


def test_divergence_is_flagged_inside_the_training_loop(tiny_config):
    """|Q| above divergence_bound sets ``diverged`` in the interval it happens; a sweep masks the
    run from there and counts it."""
    from qlearn import sweep

    low = dataclasses.replace(tiny_config, divergence_bound=1e-3)  # any Q is "too large"
    _, m = jax.jit(dqn.make_train(low))(jax.random.key(0), dqn.DQNHParams())
    assert bool(m["diverged"][0])
    _, ok = jax.jit(dqn.make_train(tiny_config))(jax.random.key(0), dqn.DQNHParams())
    assert not np.any(ok["diverged"])
    result = sweep.run(low, seeds=2, lanes=2)
    np.testing.assert_array_equal(result.metrics["diverged_at"], [[0, 0]])
    assert result.summary["configs"][0]["diverged"] == 2
    assert np.all(np.isnan(result.metrics["eval_return"]))


def test_distributional_heads_train_and_v_min_v_max_are_swept_in_one_compile(tiny_config):
    """C51 and QR-DQN end to end: finite losses that fall, a greedy policy from the head's
    expectation, and the categorical support's ends as traced hyperparameters."""
    hp = hparams.grid(dqn.DQNHParams, {"v_max": [10.0, 100.0]})
    cases = [
        ("categorical", "c51", False),
        ("quantile", "qr", True),
        ("histogram", "hl_gauss", False),
        ("iqn", "iqn", True),
    ]
    for head, loss, dueling in cases:
        config = dataclasses.replace(
            tiny_config, head=head, loss=loss, num_atoms=11, dueling=dueling
        )
        config.validate_hparams(hp)
        _, m = jax.jit(jax.vmap(dqn.make_train(config), (None, 0)))(
            jax.random.key(0), hparams.to_arrays(hp)
        )
        assert np.all(np.isfinite(m["loss"])) and not np.any(m["diverged"])
        assert np.all(m["eval_return"] >= 8)  # CartPole pays 1 per step; a policy acted
        if head not in ("quantile", "iqn"):  # |Q| ≤ v_max, and the two supports give two runs
            assert np.all(m["q_abs_max"][0] <= 10 + 1e-4)
            assert not np.array_equal(m["q_mean"][0], m["q_mean"][1])
        else:  # v_min / v_max do not enter a quantile or iqn head
            np.testing.assert_array_equal(m["q_mean"][0], m["q_mean"][1])
    config = dataclasses.replace(tiny_config, head="categorical", loss="c51")
    with pytest.raises(hparams.HParamError, match="v_min = -10 must be < v_max = -20"):
        config.validate_hparams(hparams.grid(dqn.DQNHParams, {"v_max": [10.0, -20.0]}))


def test_prioritized_replay_trains_and_sweeps_alpha_in_one_compile(tiny_config):
    """replay="prioritized": per_alpha is traced (0 and 0.6 in one program); α = 0 gives every
    item mass 1, α > 0 masses from the replayed TD errors, none above the running maximum."""
    config = dataclasses.replace(tiny_config, replay="prioritized")
    hp = hparams.grid(dqn.DQNHParams, {"per_alpha": [0.0, 0.6]})
    state, m = jax.jit(jax.vmap(dqn.make_train(config), (None, 0)))(
        jax.random.key(0), hparams.to_arrays(hp)
    )
    assert np.all(np.isfinite(m["loss"])) and "priority" not in m
    size = np.asarray(state.source.buffer.size)
    leaves = np.asarray(state.source.buffer.priorities.levels[-1])
    np.testing.assert_array_equal(leaves[0, : size[0]], 1.0)
    np.testing.assert_array_equal(leaves[:, size[0] :], 0.0)  # no item: no mass
    valid = leaves[1, : size[1]]
    assert np.unique(valid).size > 100 and valid.max() <= float(state.source.buffer.max_priority[1])
    # uniform replay draws other batches: the runs differ from prioritised α = 0
    _, m_uniform = jax.jit(dqn.make_train(tiny_config))(jax.random.key(0), dqn.DQNHParams())
    assert not np.array_equal(m_uniform["loss"], m["loss"][0])


def test_prioritized_replay_refuses_bad_input(tiny_config):
    with pytest.raises(ConfigError, match=r"config\.replay = 'rank' must be one of uniform"):
        dataclasses.replace(tiny_config, replay="rank")
    for name, value in (("per_beta", 1.5), ("per_alpha", -1.0), ("per_eps", 0.0)):
        with pytest.raises(hparams.HParamError, match=name):
            hparams.validate(dqn.DQNHParams(**{name: value}))
    config = dataclasses.replace(tiny_config, replay="prioritized", loss=my_zero_loss)
    with pytest.raises(ConfigError, match=r"needs a loss that reports LossOutput\.priority"):
        jax.eval_shape(dqn.make_train(config), jax.random.key(0), dqn.DQNHParams())


@pytest.mark.parametrize(
    ("head", "loss", "metric", "fraction", "shared"),
    [
        ("categorical", "c51", "return_cramer", 0.1, False),
        ("quantile", "qr", "return_w1", 0.1, False),
        ("iqn", "iqn", "return_w1", 0.2, False),  # an MLP, sampled levels: slower to settle
        ("iqn", "iqn", "return_w1", 0.2, True),  # the levels shared by each batch's samples
    ],
)
def test_distributional_dqn_approaches_the_true_return_distributions(
    head, loss, metric, fraction, shared
):
    """C51 and QR-DQN with one-hot features on a Garnet: the distance of their learned return
    distributions to the fixed point of the projected distributional Bellman operator of π*
    (Cramér, W₁) falls below a tenth of the untrained network's (a fifth for IQN's MLP, with
    its levels drawn per sample or per batch), and the logged μ_b-weighted one stays near there
    from the first evaluation on."""
    config = dqn.DQNConfig(
        env_id="Garnet",
        env_kwargs={"n_states": 6, "n_actions": 2, "branching": 2, "seed": 3},
        max_episode_steps=50,
        network="mlp" if head == "iqn" else "linear",  # iqn embeds τ into features
        hidden_sizes=(32,),
        head=head,
        loss=loss,
        num_atoms=51,
        num_quantiles=16,
        num_envs=4,
        total_steps=12_000,
        learning_starts=400,
        buffer_size=4000,
        batch_size=32,
        num_evals=6,
        eval_episodes=2,
        iqn_shared_levels=shared,
    )
    hp = dqn.DQNHParams(lr=0.05, gamma=0.8, eps_end=0.3, target_tau=0.1, v_min=-15, v_max=15)
    state, metrics = jax.jit(dqn.make_train(config))(jax.random.key(0), hp)
    prog = deep_q.program(config, losses.resolve(loss, double_q=True), None, config.value_head)
    hp = hparams.to_arrays(hp)
    truth = probes.ground_truth(prog, hp)
    q_fn, mdp = prog.q_function(hp), prog.env_params
    uniform = jnp.full(mdp.rewards.shape, 1.0 / mdp.rewards.size)

    def distance(params):  # the same distance, under a uniform μ
        learned = q_fn.outputs(params, mdp.features)
        found = rd.distance_metrics(head, learned, truth["eta"], uniform, q_fn.support)
        return float(found[metric])

    untrained = distance(dqn.make_stages(config)[0](jax.random.key(0), hp).learner.params)
    assert distance(state.learner.params) < fraction * untrained
    logged = np.asarray(metrics[metric])
    assert np.all(np.isfinite(logged)) and np.all(logged < 1.5 * fraction * untrained), logged


def test_a_noisy_update_differentiates_the_parameters_under_independent_noise():
    """With noise (online, target), the update's gradient is that of the loss at the noisy
    online and target networks, with respect to the parameters only (not the noise)."""
    config = dqn.DQNConfig(noisy=True, hidden_sizes=(8,))
    prog = deep_q.program(config, losses.resolve("huber", double_q=True), None, noisy=True)
    obs = jax.random.normal(jax.random.key(0), (16, 4))
    params, zeros = noisynet.split_variables(prog.network.init(jax.random.key(1), obs[:1]))
    target = jax.tree.map(lambda x: x + 0.1, params)
    online_noise, target_noise = (noisynet.sample_noise(zeros, jax.random.key(k)) for k in (2, 3))
    batch = Transition(
        obs,
        jnp.arange(16) % 2,
        jnp.ones(16),
        jnp.roll(obs, 1, 0),
        jnp.zeros(16, bool),
        jnp.zeros(16, bool),
        jnp.ones(16, jnp.int32),
    )
    hp = hparams.to_arrays(dqn.DQNHParams())
    q_fn, sgd = prog.q_function(hp), optax.sgd(0.1)

    def step(noise):
        return learners.gradient_step(
            q_fn, prog.loss, sgd, params, target, sgd.init(params), batch, hp, None, noise
        )

    new, _, m = step((online_noise, target_noise))
    loss_at = lambda p, noise: (
        prog.loss(
            q_fn,
            noisynet.with_noise(p, noise[0]),
            noisynet.with_noise(target, noise[1]),
            batch,
            hp,
            None,
        ).loss
    )
    grads = jax.grad(loss_at)(params, (online_noise, target_noise))
    jax.tree.map(
        lambda n, p, g: np.testing.assert_allclose(n, p - 0.1 * g, rtol=1e-5, atol=1e-7),
        new,
        params,
        grads,
    )
    loss = m.metrics["loss"]
    np.testing.assert_allclose(loss, loss_at(params, (online_noise, target_noise)), rtol=1e-6)
    assert not np.isclose(loss, step((online_noise, online_noise))[2].metrics["loss"])
    assert not np.isclose(loss, step(None)[2].metrics["loss"])


def test_noisy_dqn_explores_without_epsilon():
    """The NoisyNet outcome (Fortunato et al. 2018): at ε = 0 on a Garnet, DQN with noisy
    layers (σ₀ = 0.5) tries nearly every (s, a) and its greedy policy reaches J*; started
    without noise (σ₀ = 0, swept in the same compile) it visits far fewer pairs and stays
    suboptimal. The mean |σ| is logged."""
    config = dqn.DQNConfig(
        env_id="Garnet",
        env_kwargs={"n_states": 10, "n_actions": 3, "branching": 3, "seed": 0},
        max_episode_steps=50,
        noisy=True,
        hidden_sizes=(32,),
        num_envs=4,
        total_steps=8000,
        learning_starts=400,
        buffer_size=4000,
        batch_size=32,
        num_evals=4,
        eval_episodes=2,
    )
    grid = {"lr": [3e-3], "gamma": [0.9], "eps_start": [0.0], "eps_end": [0.0]}
    hp = hparams.grid(dqn.DQNHParams, {**grid, "target_tau": [0.1], "noisy_sigma0": [0.0, 0.5]})
    train = jax.jit(sweep.vmap_grid(dqn.make_train(config)))
    state, metrics = train(sweep.seed_keys(0, 2), hparams.to_arrays(hp))
    _, mdp = deep_q.make_env(config)
    q_star, _ = dp.value_iteration(mdp, 0.9)
    best = dp.policy_value(mdp, dp.greedy_policy(q_star), 0.9)
    pairs = (np.asarray(state.probes["finite_mdp"].visits) > 0).sum(
        axis=(-1, -2)
    )  # [σ₀, seed] of 30
    final = np.asarray(metrics["greedy_value"])[..., -1]
    assert np.all(pairs[1] >= 27) and np.all(final[1] > 0.99 * best), (pairs, final, best)
    assert np.all(pairs[0] < pairs[1] - 5) and np.all(final[0] < final[1] - 0.5), (pairs, final)
    sigma = np.asarray(metrics["noise_sigma"])
    assert np.all(np.isfinite(sigma)) and np.all(sigma[1] > sigma[0])


def test_coverage_replay_spreads_the_replayed_weight_over_every_reachable_pair():
    """End to end on cliff walking, c swept in one compile: with c = 1 the last interval's
    replayed weights cover all 148 reachable pairs and nothing else; with c = 0 they sit on
    the pairs the buffer holds. The uniform-μ VE falls most with full coverage."""
    config = dqn.DQNConfig(
        env_id="CliffWalking",
        replay="coverage",
        max_episode_steps=100,
        hidden_sizes=(32,),
        num_envs=4,
        total_steps=6000,
        learning_starts=400,
        buffer_size=6000,
        batch_size=32,
        num_evals=3,
        eval_episodes=1,
    )
    hp = hparams.grid(dqn.DQNHParams, {"lr": [3e-3], "gamma": [0.9], "coverage": [0.0, 1.0]})
    state, metrics = jax.jit(sweep.vmap_grid(dqn.make_train(config)))(
        sweep.seed_keys(0, 1), hparams.to_arrays(hp)
    )
    reachable = np.asarray(dp.reachable_pairs(deep_q.make_env(config)[1]))
    replayed = np.asarray(state.probes["finite_mdp"].replayed)[:, 0]
    assert np.all((replayed[1] > 0) == reachable)
    stored = np.zeros((48, 4))
    storage = state.source.buffer.storage
    states, actions = np.asarray(storage.state)[0, 0], np.asarray(storage.transition.action)[0, 0]
    np.add.at(stored, (states, actions), 1)
    assert np.all(stored[replayed[0] > 0] > 0) and (replayed[0] > 0).sum() < reachable.sum()
    ve_uniform = np.asarray(metrics["ve_uniform"])[:, 0, -1]
    assert ve_uniform[1] < 0.5 * ve_uniform[0], ve_uniform


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"per_normalise": "global"}, "config.per_normalise = 'global' must be one of batch, b"),
        (
            {"loss": "munchausen", "munchausen_next_policy": "both"},
            "config.munchausen_next_policy = 'both' must be one of target, online",
        ),
        (
            {"head": "iqn", "loss": "iqn", "iqn_target_quantiles": 0},
            "config.iqn_target_quantiles = 0 must be an integer ≥ 1 or None",
        ),
        (
            {"head": "iqn", "loss": "iqn", "iqn_action_quantiles": 2.5},
            "config.iqn_action_quantiles = 2.5 must be an integer ≥ 1",
        ),
    ],
)
def test_per_munchausen_and_iqn_config_errors_name_the_field(change, message):
    from conftest import TINY

    with pytest.raises(ConfigError, match=message):
        dqn.DQNConfig(**{**TINY, **change})
    # valid values where nothing reads them are accepted (as num_quantiles with a scalar
    # head), so a static grid over replay, head or loss may set them
    dqn.DQNConfig(
        **TINY, per_normalise="buffer", munchausen_next_policy="online", iqn_action_quantiles=3
    )


def test_prioritized_replay_normalised_over_the_buffer_keeps_an_exact_min_tree(tiny_config):
    """per_normalise="buffer": the run's min tree is the exact min tree of its sum tree's
    leaves; one update's loss is the batch-normalised one times the constant
    (min_j m_j / min_batch m)^β (the two weights differ only by their divisor), same words."""
    config = dataclasses.replace(tiny_config, replay="prioritized", per_normalise="buffer")
    state, m = jax.jit(dqn.make_train(config))(jax.random.key(0), dqn.DQNHParams())
    assert np.all(np.isfinite(m["loss"]))
    tree = state.source.buffer.priorities
    leaves = np.asarray(tree.levels[-1])
    assert np.unique(leaves).size > 100
    heap = sum_tree.pyramid(jnp.where(leaves > 0, leaves, jnp.inf), jnp.minimum)  # every level
    for stored in tree.mins:  # the min tree's stored levels, recomputed from the leaves
        np.testing.assert_array_equal(stored, heap[stored.size.bit_length() - 1])
    assert float(sum_tree.min_mass(tree)) == leaves[leaves > 0].min()
    hp = hparams.to_arrays(dqn.DQNHParams())
    words = jax.random.bits(jax.random.key(1), (config.batch_size, tree.depth), jnp.uint32)
    loss = {}
    for normalise in ("batch", "buffer"):
        parts = dqn.agent(dataclasses.replace(config, per_normalise=normalise)).build(hp)

        def step(state, parts=parts):
            batch, _ = parts.source.batch(state.source, {"plan": words})
            return parts.learner.update(state.learner, batch, {})[1].metrics["loss"]

        loss[normalise] = float(jax.jit(step)(state))
    drawn = np.asarray(sum_tree.sample(tree, words))
    beta = float(
        policies.linear_schedule(state.source.loop.env_steps, hp.per_beta, 1.0, config.total_steps)
    )
    ratio = (leaves[leaves > 0].min() / leaves[drawn].min()) ** beta
    assert ratio < 1
    np.testing.assert_allclose(loss["buffer"], ratio * loss["batch"], rtol=1e-5)


def test_munchausen_defaults_to_the_papers_target_network_policy():
    """loss=munchausen: π' at s' from the target network by default (double_q on or off);
    munchausen_next_policy='online' is the variant that takes it from the online network."""
    from conftest import TINY

    config = dqn.DQNConfig(**TINY, loss="munchausen")
    assert config.double_q and config.munchausen_next_policy == "target"
    resolved = losses.resolve(config.loss, **config.loss_options).__wrapped__
    assert resolved.keywords == {"double_q": False}
    online = dataclasses.replace(config, munchausen_next_policy="online")
    resolved = losses.resolve(online.loss, **online.loss_options).__wrapped__
    assert resolved.keywords == {"double_q": True}


class RecordingNetwork:
    """A network whose apply logs the shape of the levels τ it is given."""

    def __init__(self, network, log):
        self.network, self.log = network, log

    def apply(self, params, obs, tau=None):
        self.log.append(None if tau is None else tuple(tau.shape))
        return self.network.apply(params, obs, tau)


def test_iqn_acts_on_k_sampled_levels_when_asked():
    """iqn_action_quantiles = K: each env step chooses by the mean at K fresh levels τ
    [num_envs, K] (the greedy action of QFunction.mean_at at them, ε = 0); by default by q̂,
    the mean at the num_quantiles midpoints."""
    from conftest import TINY

    config = dqn.DQNConfig(**TINY, head="iqn", loss="iqn", num_quantiles=8, iqn_action_quantiles=5)
    loss_fn = losses.resolve(config.loss, **config.loss_options)
    prog = deep_q.program(config, loss_fn, None, config.value_head, False, 5)
    hp = hparams.to_arrays(dqn.DQNHParams())
    state = dqn.make_stages(config)[0](jax.random.key(0), hp)
    params, loop = state.learner.params, state.source.loop
    log = []
    recorded = dataclasses.replace(prog, network=RecordingNetwork(prog.network, log))
    acting = (params, state.key, loop.env_state, loop.obs)
    _, action, *_ = deep_q.explore_step(recorded, hp, *acting, jnp.float32(0.0))
    assert log == [(2, 5)]
    key = jax.random.split(state.key, 3)[0]
    tau = heads.sample_levels(jax.random.split(key)[1], 2, 5)
    values = prog.q_function(hp).mean_at(params, loop.obs, tau)
    np.testing.assert_array_equal(action, jnp.argmax(values, -1))
    log.clear()
    deep_q.explore_step(dataclasses.replace(recorded, action_quantiles=None), hp, *acting, 0.0)
    assert log == [(2, 8)]  # the midpoints


def test_iqn_trains_with_n_prime_and_k_sampled_levels(tiny_config):
    config = dataclasses.replace(
        tiny_config,
        head="iqn",
        loss="iqn",
        num_quantiles=8,
        iqn_target_quantiles=6,
        iqn_action_quantiles=4,
    )
    _, m = jax.jit(dqn.make_train(config))(jax.random.key(0), dqn.DQNHParams())
    assert np.all(np.isfinite(m["loss"])) and np.all(np.isfinite(m["eval_return"]))
