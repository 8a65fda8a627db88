"""The driver: the loop every deep-Q algorithm runs over a source, a learner and probes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn.algos import dqn, driver, probes, replay_source


def counting_probe() -> probes.Probe:
    """Counts the env steps it is shown (cumulative) and the batches of the current interval."""

    def on_steps(counts, trace):
        return {"steps": counts["steps"] + trace.state.size, "batches": counts["batches"]}

    return probes.Probe(
        "count",
        metrics=lambda counts, learner, env_steps: {
            "probe_steps": counts["steps"],
            "probe_batches": counts["batches"],
            "probe_env_steps": env_steps,
        },
        init=lambda: {"steps": jnp.int32(0), "batches": jnp.int32(0)},
        start=lambda counts: {"steps": counts["steps"], "batches": jnp.int32(0)},
        on_steps=on_steps,
        on_batch=lambda counts, batch, drawn: {
            "steps": counts["steps"],
            "batches": counts["batches"] + 1,
        },
    )


def test_the_driver_shows_probes_every_step_and_every_batch_of_each_interval():
    """A probe added to DQN's parts on a finite MDP sees every env step (the warm-up's
    included, as the finite-MDP probe's visit counts need) and each interval's
    iterations × updates_per_train batches, counted from the interval's start; what it
    measures lands in the metrics, and the run's own numbers do not move."""
    config = dqn.DQNConfig(
        env_id="Garnet",
        env_kwargs={"n_states": 6, "n_actions": 2, "branching": 2},
        num_envs=3,
        total_steps=1_200,
        learning_starts=100,
        buffer_size=500,
        batch_size=8,
        train_every=2,
        updates_per_train=3,
        hidden_sizes=(8,),
        num_evals=2,
        eval_episodes=1,
    )
    agent = dqn.agent(config)
    probed = driver.Agent(
        agent.prog,
        lambda hp: agent.build(hp)._replace(probes=(*agent.build(hp).probes, counting_probe())),
        agent.iterations_per_eval,
    )
    hp = dqn.DQNHParams()
    _, plain = jax.jit(driver.make_train(agent))(jax.random.key(0), hp)
    _, m = jax.jit(driver.make_train(probed))(jax.random.key(0), hp)
    warmup = replay_source.warmup_steps(config) * config.num_envs
    per_interval = config.iters_per_eval * config.train_every * config.num_envs
    np.testing.assert_array_equal(m["probe_steps"], warmup + per_interval * np.arange(1, 3))
    np.testing.assert_array_equal(m["probe_steps"], m["probe_env_steps"])
    np.testing.assert_array_equal(
        m["probe_batches"], [config.iters_per_eval * config.updates_per_train] * 2
    )
    for name, values in plain.items():
        np.testing.assert_array_equal(m[name], values, err_msg=name)


def test_key_streams_are_split_in_one_order_and_only_when_asked():
    key = jax.random.key(3)
    k1, a = driver.split_streams(key, ("noise", "loss"), 4)
    k2, b = driver.split_streams(key, ("loss", "noise"), 4)
    assert sorted(a) == ["loss", "noise"] and a["loss"].shape == (4,)
    for name in a:
        np.testing.assert_array_equal(jax.random.key_data(a[name]), jax.random.key_data(b[name]))
    np.testing.assert_array_equal(jax.random.key_data(k1), jax.random.key_data(k2))
    same, none = driver.split_streams(key, (), 4)
    assert none == {} and np.array_equal(jax.random.key_data(same), jax.random.key_data(key))
    np.testing.assert_array_equal(
        jax.random.key_data(driver.run_keys(key).eval),
        jax.random.key_data(jax.random.split(key, 4)[3]),
    )
    with pytest.raises(ValueError, match="unknown key streams"):
        driver.split_streams(key, ("tau",), 4)
