"""Tabular control on qlearn's finite MDPs: Q-learning (Watkins), Double Q-learning, Sarsa and
Expected Sarsa, as ``make_train(config) -> train(key, hparams) -> (final_state, metrics)``.

One run is one agent acting in one environment for ``num_episodes`` episodes, with a constant
ε-greedy behaviour policy (ties broken uniformly at random, masked actions never chosen) and
the one-step update

    Q(s, a) ← Q(s, a) + α (y − Q(s, a)),

y from :mod:`qlearn.targets` (discount γ·(1 − terminated): a time limit still bootstraps).
Double Q-learning keeps two tables, acts ε-greedily on their sum and, with probability ½ each,
updates one with the other's value of its own greedy action (van Hasselt 2010).

Metrics are per episode ([num_episodes]): ``return`` (undiscounted), ``length``,
``first_action`` (the action taken in the episode's first state), and the true errors of
:func:`qlearn.dp.error_metrics` against q* (value iteration on the MDP's arrays):
``ve_behaviour`` = Σ μ_b (q* − Q)² under the exact on-policy distribution of the current
ε-greedy policy, ``ve_empirical`` under the visit frequencies so far, ``greedy_value``, the
greedy policy's exact γ-discounted expected return, and ``greedy_return``, its undiscounted
one (what an episode's ``return`` measures). Actions are :func:`qlearn.policies.epsilon_greedy`
(ties broken uniformly, masked actions never taken). Vmap ``train`` over keys and
hyperparameters as for DQN.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from qlearn import dp, envs, hparams, policies, targets
from qlearn.algos.algorithm import Algorithm
from qlearn.types import ConfigError, config_field

ALGORITHMS = ("q_learning", "double_q_learning", "sarsa", "expected_sarsa")
_UNAVAILABLE = -1e30  # stands in for masked actions' values in a max (finite: 0 · it = 0)


@dataclasses.dataclass(frozen=True)
class TabularConfig:
    """Static configuration of a tabular run (hashable, validated on construction)."""

    env_id: str = config_field("CliffWalking", "a finite MDP id (qlearn.envs.CATALOG)")
    env_kwargs: tuple[tuple[str, Any], ...] = config_field(
        (), "builder arguments, as (name, value)"
    )
    algorithm: str = config_field("q_learning", f"one of {', '.join(ALGORITHMS)}")
    num_episodes: int = config_field(500, "episodes per run (metrics have this many time steps)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "env_kwargs", envs.kwargs_tuple(self.env_kwargs))
        if not envs.is_finite(self.env_id):
            raise ConfigError(
                f"config.env_id = '{self.env_id}' is not a finite MDP "
                f"(tabular methods need one of {', '.join(envs.CATALOG)})"
            )
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(
                f"config.algorithm = '{self.algorithm}' must be one of {', '.join(ALGORITHMS)}"
            )
        if not isinstance(self.num_episodes, int) or self.num_episodes < 1:
            raise ConfigError(f"config.num_episodes = {self.num_episodes!r} must be ≥ 1")
        make_env(self)  # builder arguments are checked here, before anything compiles

    def validate_hparams(self, hp: TabularHParams) -> None:
        """Checks of hyperparameters against this config (before anything compiles): every γ
        must give the MDP finite values (q* is the ground truth of the metrics)."""
        dp.check_discounts(make_env(self)[1], hp.gamma)


@struct.dataclass
class TabularHParams:
    """Hyperparameters (traced: a grid over them is one compile)."""

    lr: float = hparams.field(0.5, low=0, high=1, low_open=True, help="step size α")
    gamma: float = hparams.field(1.0, low=0, high=1, help="discount γ")
    epsilon: float = hparams.field(0.1, low=0, high=1, help="ε of the ε-greedy behaviour")
    initial_q: float = hparams.field(0.0, help="initial value of every Q(s, a)")


@struct.dataclass
class TabularState:
    q: jax.Array
    """[2, S, A]: the table(s); Double Q-learning uses both, the others only q[0]."""
    visits: jax.Array
    """[S, A] state-action visit counts."""
    env_state: Any
    key: jax.Array


FINAL_STATISTIC = "mean return of the last 10% of episodes (online, ε-greedy), over seeds"


def learning_curve(metrics: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(episode [T], returns [H, S, T], x label, y label) for figures."""
    returns = metrics["return"]
    return np.arange(1, returns.shape[-1] + 1), returns, "episode", "return per episode"


def final_returns(metrics: dict[str, np.ndarray]) -> np.ndarray:
    """Mean return over the last 10% of episodes, [H, S] (see :data:`FINAL_STATISTIC`)."""
    returns = metrics["return"]
    return returns[:, :, -max(1, returns.shape[-1] // 10) :].mean(-1)


def progress_total(config: TabularConfig) -> tuple[int, str]:
    """(units a run reports to ``progress`` in all, unit name)."""
    return config.num_episodes, "episode"


def make_env(config: TabularConfig) -> tuple[envs.FiniteMDP, envs.FiniteMDPParams]:
    return envs.make(config.env_id, **dict(config.env_kwargs))


def td_update(
    algorithm: str,
    key: jax.Array,
    q: jax.Array,
    mask: jax.Array,
    s: jax.Array,
    a: jax.Array,
    r: jax.Array,
    discount: jax.Array,
    s_next: jax.Array,
    a_next: jax.Array,
    hp: TabularHParams,
) -> jax.Array:
    """One TD update of the tables q [2, S, A] on the transition (s, a, r, s', a').

    Q(s,a) += α (y − Q(s,a)) with y, for discount d = γ(1 − terminated):
      q_learning:        r + d max_{a' available} Q(s', a')
      sarsa:             r + d Q(s', a')
      expected_sarsa:    r + d Σ_a' π_ε(a'|s') Q(s', a')      (π_ε: the behaviour policy)
      double_q_learning: table i = Bernoulli(½) (``key``): r + d Q_{1−i}(s', argmax Q_i(s', ·))
    """
    masked_next = jnp.where(mask[s_next], q[:, s_next], _UNAVAILABLE)  # [2, A]
    if algorithm == "double_q_learning":
        i = jax.random.bernoulli(key).astype(jnp.int32)
        y = targets.double_q_learning(r, discount, q[1 - i, s_next], masked_next[i])
        return q.at[i, s, a].add(hp.lr * (y - q[i, s, a]))
    if algorithm == "q_learning":
        y = targets.q_learning(r, discount, masked_next[0])
    elif algorithm == "sarsa":
        y = targets.sarsa(r, discount, q[0, s_next], a_next)
    elif algorithm == "expected_sarsa":
        probs = policies.epsilon_greedy_probs(q[0, s_next], hp.epsilon, mask[s_next])
        y = targets.expected_sarsa(r, discount, masked_next[0], probs)
    else:
        raise ValueError(f"unknown algorithm '{algorithm}'")
    return q.at[0, s, a].add(hp.lr * (y - q[0, s, a]))


def epsilon_greedy_action(
    key: jax.Array, q: jax.Array, s: jax.Array, epsilon: jax.Array, mask: jax.Array
) -> jax.Array:
    """The ε-greedy action in state ``s`` on the sum of the tables ``q`` [2, S, A] (Double
    Q-learning acts on both; the other methods update only the first, so the second adds a
    constant that moves no argmax), among the actions ``mask[s]`` allows."""
    words = jax.random.bits(key, (1, policies.WORDS_PER_DECISION), jnp.uint32)
    return policies.epsilon_greedy(words, (q[0, s] + q[1, s])[None], epsilon, mask[s][None])[0]


def make_train(
    config: TabularConfig, *, progress: Callable | None = None
) -> Callable[[jax.Array, TabularHParams], tuple[TabularState, dict[str, jax.Array]]]:
    """Build ``train(key, hparams) -> (final_state, metrics)``; see the module docstring.

    ``progress``, if given, is called from the compiled loop up to 50 times per run with
    (episodes done since the last call, the latest episode's return).
    """
    env, mdp = make_env(config)
    mask = mdp.action_mask
    # episodes run in at most 50 equal blocks, so progress reports stay cheap
    num_blocks = max(d for d in range(1, 51) if config.num_episodes % d == 0)
    per_block = config.num_episodes // num_blocks
    num_states, num_actions = mdp.rewards.shape
    algorithm = config.algorithm

    def train(key: jax.Array, hp: TabularHParams) -> tuple[TabularState, dict[str, jax.Array]]:
        hp = hparams.to_arrays(hp)
        q_star, _ = dp.value_iteration(mdp, hp.gamma)
        k_reset, k_loop = jax.random.split(key)
        _, env_state = env.reset(k_reset, mdp)
        state = TabularState(
            q=jnp.full((2, num_states, num_actions), hp.initial_q, jnp.float32),
            visits=jnp.zeros((num_states, num_actions), jnp.float32),
            env_state=env_state,
            key=k_loop,
        )

        act = functools.partial(epsilon_greedy_action, epsilon=hp.epsilon, mask=mask)

        def episode(state: TabularState, _: Any) -> tuple[TabularState, dict[str, jax.Array]]:
            key, k_first = jax.random.split(state.key)
            s0 = state.env_state.state
            a0 = act(k_first, state.q, s0)

            def cond(carry: tuple) -> jax.Array:
                return ~carry[-1]

            def body(carry: tuple) -> tuple:
                key, q, visits, env_state, a, ret, length, _ = carry
                key, k_step, k_next, k_upd = jax.random.split(key, 4)
                s = env_state.state
                _, env_state, r, term, trunc, info = env.step(k_step, env_state, a, mdp)
                s_next = info["state"]
                a_next = act(k_next, q, s_next)  # Sarsa's a', chosen before the update
                discount = hp.gamma * (1.0 - term.astype(jnp.float32))
                q = td_update(algorithm, k_upd, q, mask, s, a, r, discount, s_next, a_next, hp)
                visits = visits.at[s, a].add(1.0)
                if algorithm != "sarsa":  # the others act on the updated table
                    a_next = act(k_next, q, s_next)
                return key, q, visits, env_state, a_next, ret + r, length + 1, term | trunc

            carry = (key, state.q, state.visits, state.env_state, a0, 0.0, 0, False)
            carry = jax.tree.map(jnp.asarray, carry)
            key, q, visits, env_state, _, ret, length, _ = jax.lax.while_loop(cond, body, carry)
            q_hat = q[0] if algorithm != "double_q_learning" else 0.5 * (q[0] + q[1])
            behaviour = policies.epsilon_greedy_probs(q_hat, hp.epsilon, mask)
            metrics = {
                "return": ret,
                "length": length,
                "first_action": a0,
                **dp.error_metrics(mdp, q_hat, q_star, behaviour, visits, hp.gamma),
            }
            return TabularState(q=q, visits=visits, env_state=env_state, key=key), metrics

        def block(state: TabularState, _: Any) -> tuple[TabularState, dict[str, jax.Array]]:
            state, metrics = jax.lax.scan(episode, state, length=per_block)
            if progress is not None:  # one host call per block, not per episode
                jax.debug.callback(progress, jnp.int32(per_block), metrics["return"][-1])
            return state, metrics

        state, metrics = jax.lax.scan(block, state, length=num_blocks)
        return state, jax.tree.map(lambda m: m.reshape(config.num_episodes), metrics)

    return train


ALGORITHM = Algorithm(
    name="tabular",
    config=TabularConfig,
    hparams=TabularHParams,
    make_train=make_train,
    learning_curve=learning_curve,
    final_returns=final_returns,
    final_statistic=FINAL_STATISTIC,
    progress_total=progress_total,
    validate_hparams=TabularConfig.validate_hparams,
    title_field="algorithm",
)
