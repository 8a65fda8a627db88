"""Shared fixtures. Compiled functions are session-scoped: each distinct DQN program compiles
once for the whole suite. Also sets QLEARN_FAST=1 for the notebooks the suite executes
(testpaths include notebooks/; their kernels inherit the environment): small budgets."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import sweep
from qlearn.algos import dqn

os.environ.setdefault("QLEARN_FAST", "1")


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """One persistent compilation cache for the suite and the CLI subprocesses it starts: a
    program compiled by one test (or process) is loaded, not recompiled, by the next."""
    from qlearn import devices

    path = tmp_path_factory.getbasetemp() / "jax-cache"
    os.environ["QLEARN_CACHE_DIR"] = str(path)
    devices.enable_compilation_cache(True)
    return path


@pytest.fixture(params=["jit", "eager"])
def variant(request):
    """Numeric unit tests run their function jitted and not (what rlax's tests do with
    ``chex.all_variants``): ``variant(fn, **jit_kwargs)``."""
    if request.param == "jit":
        return lambda fn, **kwargs: jax.jit(fn, **kwargs)
    return lambda fn, **kwargs: fn


# A small CartPole config: 2 envs, 2,000 steps, 4 evaluation points. Compiles in seconds.
TINY = dict(
    env_id="CartPole-v1",
    num_envs=2,
    total_steps=2_000,
    learning_starts=200,
    buffer_size=4_000,
    batch_size=16,
    train_every=2,
    updates_per_train=1,
    hidden_sizes=(16,),
    num_evals=4,
    eval_episodes=2,
)


@pytest.fixture(scope="session")
def tiny_config() -> dqn.DQNConfig:
    return dqn.DQNConfig(**TINY)


@pytest.fixture(scope="session")
def tiny_grid_fn(tiny_config):
    """jit(vmap(vmap(train))) of the tiny config, with a trace counter."""
    traces = []

    def counted(key, hp):
        traces.append(1)
        return dqn.make_train(tiny_config)(key, hp)

    fn = jax.jit(sweep.vmap_grid(counted))
    fn.traces = traces
    return fn


@pytest.fixture(scope="session")
def distributional_inputs():
    """``inputs(rng, batch, actions, atoms)``: random inputs of distributional targets."""

    def inputs(rng, batch=64, actions=4, atoms=11):
        """Random transitions, a third terminal (discount 0), some with γ (truncated or not), some
        γ³ (3-step): ``(r_t, discount_t, logits_t [B, A, K], selector [B, A])``."""
        r_t = rng.normal(size=batch) * 3
        gamma = np.where(rng.uniform(size=batch) < 0.3, 0.9**3, 0.9)
        discount_t = gamma * (rng.uniform(size=batch) > 0.33)
        logits_t = rng.normal(size=(batch, actions, atoms)) * 2
        selector = rng.normal(size=(batch, actions))
        return [jnp.asarray(x, jnp.float32) for x in (r_t, discount_t, logits_t, selector)]

    return inputs
