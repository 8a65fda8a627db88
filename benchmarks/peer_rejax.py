"""Rejax's DQN or PQN on CartPole-v1 with Rejax's own CartPole configuration, R seeds vmapped;
prints one JSON line. Runs in the separate peers environment (``make bench-peers``): Rejax
needs gymnax 0.0.9, qlearn gymnax 1.x.

    .venv-peers/bin/python benchmarks/peer_rejax.py dqn 8
"""

from __future__ import annotations

import json
import sys
import time

import jax
import numpy as np
from rejax import get_algo

# Rejax's configs/gymnax/cartpole.yaml (rejax 0.1.3), evaluated once at the end (128 episodes,
# Rejax's evaluation) instead of every eval_freq steps, so that training throughput is timed.
CONFIGS = {
    "dqn": dict(
        env="CartPole-v1",
        agent="DuelingQNetwork",
        agent_kwargs={"activation": "swish"},
        num_envs=10,
        buffer_size=50_000,
        fill_buffer=5_000,
        batch_size=100,
        max_grad_norm=10,
        learning_rate=0.001,
        num_epochs=5,
        total_timesteps=100_000,
        polyak=0.98,
        eps_start=1,
        eps_end=0.05,
        exploration_fraction=0.5,
        gamma=0.99,
        ddqn=True,
        normalize_observations=False,
    ),
    "pqn": dict(
        env="CartPole-v1",
        num_envs=16,
        num_steps=128,
        num_minibatches=16,
        max_grad_norm=10,
        learning_rate=0.0003,
        num_epochs=5,
        total_timesteps=524_288,
        eps_start=1,
        eps_end=0.05,
        exploration_fraction=0.5,
        gamma=0.99,
        td_lambda=0.9,
        normalize_observations=False,
    ),
}


def main() -> None:
    algo_name, seeds = sys.argv[1], int(sys.argv[2])
    config = CONFIGS[algo_name]
    algo = get_algo(algo_name).create(
        **config, eval_freq=config["total_timesteps"], skip_initial_evaluation=True
    )
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    start = time.perf_counter()
    # One seed runs unbatched, as qlearn's (benchmarks/common.py: jit_runs): on XLA:CPU a batch
    # of one compiles to slower kernels than no batch.
    run = (lambda k: algo.train(k[0])) if seeds == 1 else jax.vmap(algo.train)
    train = jax.jit(run).lower(keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    _, (_, returns) = jax.block_until_ready(train(keys))
    seconds = time.perf_counter() - start
    returns = np.asarray(returns).reshape(seeds, *np.shape(returns)[-2:])  # [seeds, evals, 128]
    final = returns[:, -1].mean(axis=-1)  # [seeds]: mean of 128 episodes
    print(
        json.dumps(
            {
                "library": "rejax",
                "algo": algo_name,
                "seeds": seeds,
                "env_steps": seeds * config["total_timesteps"],
                "compile_seconds": compile_s,
                "seconds": seconds,
                "final_returns": final.tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
