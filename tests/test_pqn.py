import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import cli, envs, hparams, runs, sweep
from qlearn.algos import learners, pqn
from qlearn.spec import Spec, make_spec
from qlearn.types import ConfigError

SMALL = dict(
    num_envs=16,
    rollout_steps=32,
    total_steps=60_000,
    num_minibatches=4,
    hidden_sizes=(64,),
    num_evals=5,
    eval_episodes=4,
)


def test_pqn_learns_cartpole_in_one_vmapped_program():
    config = pqn.PQNConfig(**SMALL)
    result = sweep.run(config, seeds=2)
    ret = result.metrics["eval_return"]  # [1, 2, 5]
    assert ret.shape == (1, 2, 5)
    assert result.metrics["env_steps"][0, 0, -1] == config.actual_total_steps
    assert ret[0, :, -1].mean() > 3 * ret[0, :, 0].mean()  # learned
    assert ret[0, :, -1].mean() > 300
    assert not result.metrics["diverged"].any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_minibatches=3), "must divide the rollout batch num_envs × rollout_steps = 512"),
        (dict(total_steps=10_000), "is less than num_evals"),
        (dict(loss="l1"), "config.loss = 'l1'"),
        (dict(env_id="CartPol-v1"), "did you mean CartPole-v1"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, message):
    with pytest.raises((ConfigError, ValueError)) as info:
        pqn.PQNConfig(**kwargs)
    assert message in str(info.value)


def test_lambda_outside_the_unit_interval_fails_before_compiling(capsys, tmp_path, monkeypatch):
    with pytest.raises(hparams.HParamError, match=r"'lam' = 1.5 is outside its range \[0, 1\]"):
        hparams.validate(pqn.PQNHParams(lam=1.5))
    monkeypatch.setattr(sweep, "execute", lambda *a, **k: pytest.fail("compiled"))
    code = cli.main(["train", "--algo", "pqn", "--hp", "lam=-0.1", "--out", str(tmp_path / "r")])
    assert code == cli.EXIT_USAGE
    assert "'lam' = -0.1 is outside its range [0, 1]" in capsys.readouterr().err


def test_a_truncated_step_bootstraps_from_the_final_observation():
    """In the training loop the bootstrap value of step t is Q at ``next_obs``, which
    rollout.step_envs sets to info['final_observation']: check that it differs from the reset
    observation the env returns, on a CartPole step forced to truncate."""
    from qlearn import envs
    from qlearn.algos import rollout

    env, params = envs.make("CartPole-v1", max_steps_in_episode=1)
    obs, state = rollout.reset_envs(env, params, jax.random.key(0), 2)
    new_obs, _, tr = rollout.step_envs(
        env, params, jax.random.split(jax.random.key(1), 2), state, obs, jnp.zeros(2, jnp.int32)
    )
    assert tr.truncated.all()
    assert not np.allclose(tr.next_obs, new_obs)  # the successor, not the next episode's start


def test_minatar_games_are_served_and_pqn_runs_the_cnn_on_them():
    from qlearn import envs

    with pytest.raises(ValueError, match="did you mean Breakout-MinAtar"):
        envs.make("Breakout-MinAtr")
    with pytest.raises(ConfigError, match="needs image observations"):
        pqn.PQNConfig(network="cnn")  # CartPole's observations are vectors
    config = pqn.PQNConfig(
        env_id="Breakout-MinAtar",
        network="cnn",
        num_envs=4,
        rollout_steps=8,
        total_steps=64,
        num_evals=1,
        eval_episodes=1,
        hidden_sizes=(32,),
        max_episode_steps=20,
    )
    _, metrics = jax.jit(pqn.make_train(config))(jax.random.key(0), pqn.PQNHParams())
    assert metrics["eval_return"].shape == (1,) and np.isfinite(metrics["loss"]).all()


@pytest.mark.parametrize(
    ("lr_decay", "expected"), [(0.0, [1, 1, 1, 1]), (1.0, [1, 0.75, 0.5, 0.25])]
)
def test_learning_rate_decays_linearly_over_the_run(lr_decay, expected):
    """Adam's first steps on a constant gradient have size ≈ lr, so the parameter moves by the
    step size of each update: lr · (1 − lr_decay · u / U) for update u of U."""
    config = pqn.PQNConfig(
        num_envs=1, rollout_steps=4, num_epochs=2, num_minibatches=2, total_steps=4, num_evals=1
    )
    assert config.total_updates == 4
    hp = hparams.to_arrays(pqn.PQNHParams(lr=0.1, lr_decay=lr_decay))
    optimizer = learners.make_optimizer(hp, config.total_updates)
    params = jnp.zeros(())
    state = optimizer.init(params)
    sizes = []
    for _ in range(config.total_updates):
        updates, state = optimizer.update(jnp.ones(()), state, params)
        sizes.append(-float(updates) / 0.1)
        params = params + updates
    np.testing.assert_allclose(sizes, expected, rtol=1e-4)  # Adam's ε: ≈1e-5


def trap(max_steps_in_episode: int = 10):
    """Start (0) → end (1, terminal). Actions 0 and 1 pay 0; action 2 is unavailable at the
    start and would pay 100: an agent that ever takes it shows it in its returns."""
    p = np.zeros((2, 3, 2))
    p[:, :, 1] = 1.0
    rewards = np.zeros((2, 3))
    rewards[0, 2] = 100.0
    mask = np.array([[True, True, False], [True, True, True]])
    params = envs.finite_mdp_params(
        p, rewards, np.array([1.0, 0.0]), terminal=np.array([False, True]), action_mask=mask,
        max_steps_in_episode=max_steps_in_episode,
    )  # fmt: skip
    return envs.FiniteMDP(params, "Trap"), params


@pytest.mark.parametrize("algo", ["dqn", "pqn"])
def test_dqn_and_pqn_never_take_a_masked_action(algo, monkeypatch):
    from qlearn import algos

    monkeypatch.setitem(envs.CATALOG, "Trap", trap)
    algorithm = algos.get(algo)
    sizes = dict(num_envs=4, total_steps=2_048, num_evals=4, eval_episodes=4)
    if algo == "dqn":
        sizes |= dict(learning_starts=200, buffer_size=2_048, batch_size=16, network="linear")
    else:
        sizes |= dict(rollout_steps=16, hidden_sizes=(8,))
    config = algorithm.config(env_id="Trap", **sizes)
    hp = algorithm.hparams(eps_start=1.0, eps_end=1.0)  # always exploring: uniform over available
    _, m = jax.jit(algorithm.make_train(config))(jax.random.key(0), hp)
    assert np.all(np.asarray(m["train_episodes"]) > 0)
    np.testing.assert_array_equal(m["train_return"], 0.0)
    np.testing.assert_array_equal(m["eval_return"], 0.0)


LOSS_SIZES = dict(num_envs=4, rollout_steps=16, total_steps=2_048, num_evals=2, eval_episodes=2)


@pytest.fixture(scope="module")
def mse_run(tmp_path_factory):
    """One seed of PQN with its built-in loss, written to a run directory (one compile shared
    by the tests below)."""
    out = tmp_path_factory.mktemp("pqn") / "mse"
    return sweep.run(pqn.PQNConfig(**LOSS_SIZES), {"lr": [1e-3]}, seeds=1, lanes=1, out=out)


def test_a_user_loss_by_function_or_import_path_and_losses_compared_in_one_compile(mse_run):
    """A tuple of λ-return losses is one program; each configuration is that loss's run: the
    built-in, a user function and the same function by import path."""
    from user_losses import my_return_loss

    config = pqn.PQNConfig(**LOSS_SIZES, loss=("mse", my_return_loss, "user_losses:my_return_loss"))
    both = sweep.run(config, {"loss_index": [0, 1, 2]}, seeds=1, lanes=1)
    for k, v in mse_run.metrics.items():  # the built-in through the switch: the same maths
        # (another compiled program, so equal to rounding, not bitwise; README, Reproducibility)
        np.testing.assert_allclose(both.metrics[k][0], v[0], rtol=1e-5, err_msg=k)
    np.testing.assert_array_equal(both.metrics["loss"][1], both.metrics["loss"][2])
    assert not np.array_equal(both.metrics["loss"][0], both.metrics["loss"][1])
    assert np.all(np.isnan(both.metrics["my_stat"][0])) and np.all(both.metrics["my_stat"][1] == 7)
    assert runs.labels(both.spec)[0] == "loss=mse"
    with pytest.raises(hparams.HParamError, match="'loss_index' = 3"):
        sweep.run(config, {"loss_index": [3]}, seeds=1)


def test_the_built_in_losses_are_the_semi_gradient_regression_on_the_targets():
    """The gradient of the built-in "huber" λ-return loss is −mean(ψ'(G − q̂) ∇q̂): the
    target carries no gradient, the prediction all of it."""
    from qlearn import losses, networks
    from qlearn.types import ReturnBatch

    net = networks.build("mlp", 3, (4,), hidden_sizes=(8,), activation="relu", layer_norm=False)
    obs = jax.random.normal(jax.random.key(0), (16, 4))
    params = net.init(jax.random.key(1), obs[:1])
    action = jnp.arange(16) % 3
    hp = pqn.PQNHParams(huber_delta=0.5)

    def total(p, target):
        batch = ReturnBatch(obs=obs, action=action, target=target)
        return losses.resolve_return_loss("huber")(net.apply, p, batch, hp, None).loss

    target = jnp.linspace(-2.0, 2.0, 16)
    assert float(jnp.abs(jax.grad(total, argnums=1)(params, target)).max()) == 0.0

    def by_hand(p):
        q = jnp.take_along_axis(net.apply(p, obs), action[:, None], axis=-1)[:, 0]
        psi = jnp.clip(jax.lax.stop_gradient(target - q), -0.5, 0.5)  # Huber's ψ
        return -jnp.mean(psi * q)

    auto, manual = jax.grad(total)(params, target), jax.grad(by_hand)(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), auto, manual)


def test_pqn_counts_refuse_booleans_like_dqn():
    with pytest.raises(ConfigError, match="num_epochs = True must be an integer ≥ 1"):
        pqn.PQNConfig(num_epochs=True)


def test_a_pqn_directory_written_before_loss_index_is_the_same_run(mse_run, capsys):
    """A run directory whose spec predates the hyperparameter (as every PQN directory written
    before it does) loads as the same run: the same sweep finds it finished, and it reproduces
    bitwise."""
    import json

    config = pqn.PQNConfig(**LOSS_SIZES)
    out = mse_run.path
    meta = json.loads((out / "config.json").read_text())
    del meta["spec"]["hparams"]["loss_index"]  # as written before PQN had it
    (out / "config.json").write_text(json.dumps(meta))
    spec = make_spec(config, {"lr": [1e-3]}, seeds=1, lanes=1)
    assert Spec.from_json(meta["spec"]) == spec
    assert sweep.prepare(out, spec) is True  # finished: nothing to do, nothing refused
    assert cli.main(["reproduce", "--quiet", str(out)]) == 0
    assert "reproduced: all" in capsys.readouterr().out


def test_pqn_rnn_remembers_the_tmaze_cue_and_reproduces_by_seed():
    """A GRU core reaches the T-maze's optimum (every greedy episode at the cue's side: mean
    return 1), beyond the ½ no policy of the observation can pass; the run is bitwise the same
    from the same key."""
    from qlearn.envs import catalog

    length = 4
    config = pqn.PQNConfig(
        env_id="TMaze",
        env_kwargs={"length": length},
        core="gru",
        memory_size=64,
        hidden_sizes=(64,),
        num_envs=16,
        rollout_steps=16,
        num_minibatches=4,
        total_steps=97_280,  # experiments/memory.py's budget and network at this length
        num_evals=4,
        eval_episodes=32,
    )
    train = jax.jit(pqn.make_train(config))
    hp = pqn.PQNHParams(gamma=0.9)  # experiments/memory.py's (at γ = 0.99 it stalls here)
    _, metrics = train(jax.random.key(0), hp)
    _, again = train(jax.random.key(0), hp)
    returns = np.asarray(metrics["eval_return"])
    assert returns[-1] == catalog.tmaze_optimal_return(length), returns
    assert catalog.tmaze_memoryless_bound(length) < returns[-1]
    for name, values in metrics.items():
        np.testing.assert_array_equal(values, again[name], err_msg=name)
