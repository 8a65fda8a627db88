"""Off-policy prediction with linear features on a finite MDP: v̂(s) = φ(s)ᵀw learned for a
target policy π from the behaviour policy b's experience, by any loss of
:data:`qlearn.losses.LINEAR_LOSSES` (semi-gradient TD, residual gradient, TDC, GTD2).

Two modes:
  * ``"sample"``: one transition per step from a single env following b, weighted by the
    importance ratio ρ = π(a|s)/b(a|s) (off-policy TD(0) and its gradient-TD relatives);
  * ``"expected"``: one sweep per step over every state with the expected update under π,
    each state weighted by b's on-policy distribution d_b (so the step is the expectation of
    the sampled one; Sutton & Barto's "semi-gradient DP", eq. 11.9, where d_b is uniform as
    in Baird's counterexample; for the residual-gradient loss, gradient descent on the
    d_b-weighted mean squared Bellman error).

Each step applies w ← w − α ∂L/∂w and h ← h − β ∂L/∂h (h: the secondary weights of TDC/GTD2).
The semi-gradient loss bootstraps from a target copy w⁻ refreshed every ``target_period`` steps
(a traced hyperparameter; 1 means w itself, the classic TD(0)) — the target network of DQN,
here with exactly known error.
Metrics per step ([num_steps]): ``weights`` (after the step, [num_steps, d]) and ``ve``, the
value error Σ_s d_b(s) (v_π(s) − φ(s)ᵀw)² under b's on-policy state distribution, with v_π
computed exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import dp, envs, hparams, losses
from qlearn.types import ConfigError, config_field


@dataclasses.dataclass(frozen=True)
class PredictionConfig:
    """Static configuration (hashable, validated on construction). Policies are given as
    action probabilities shared by every state (as in Baird's counterexample)."""

    env_id: str = config_field("Baird", "a finite MDP id")
    env_kwargs: tuple[tuple[str, Any], ...] = config_field(
        (), "builder arguments, as (name, value)"
    )
    loss: str = config_field("semi_gradient", f"one of {', '.join(losses.LINEAR_LOSSES)}")
    mode: str = config_field(
        "sample", "'sample' (off-policy transitions) or 'expected' (DP sweeps)"
    )
    target_policy: tuple[float, ...] = config_field((0.0, 1.0), "π(a), the same in every state")
    behaviour_policy: tuple[float, ...] = config_field(
        (6 / 7, 1 / 7), "b(a), the same in every state"
    )
    initial_weights: tuple[float, ...] | None = config_field(None, "w₀ (default zeros)")
    num_steps: int = config_field(1000, "updates (transitions or sweeps)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "env_kwargs", envs.kwargs_tuple(self.env_kwargs))
        for name in ("target_policy", "behaviour_policy", "initial_weights"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(x) for x in value))
        if not envs.is_finite(self.env_id):
            raise ConfigError(f"config.env_id = '{self.env_id}' is not a finite MDP")
        if self.loss not in losses.LINEAR_LOSSES:
            raise ConfigError(
                f"config.loss = '{self.loss}' must be one of {', '.join(losses.LINEAR_LOSSES)}"
            )
        if self.mode not in ("sample", "expected"):
            raise ConfigError(f"config.mode = '{self.mode}' must be 'sample' or 'expected'")
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ConfigError(f"config.num_steps = {self.num_steps!r} must be ≥ 1")
        env, _ = make_env(self)
        for name in ("target_policy", "behaviour_policy"):
            probs = getattr(self, name)
            if len(probs) != env.num_actions or min(probs) < 0 or abs(sum(probs) - 1) > 1e-6:
                raise ConfigError(
                    f"config.{name} = {probs} must be {env.num_actions} probabilities summing to 1"
                )
        if any(
            p > 0 and q == 0 for p, q in zip(self.target_policy, self.behaviour_policy, strict=True)
        ):
            raise ConfigError(
                "the behaviour policy must cover every action the target policy takes"
            )
        if self.initial_weights is not None and len(self.initial_weights) != env.feature_dim:
            raise ConfigError(
                f"config.initial_weights has {len(self.initial_weights)} entries; the features "
                f"have {env.feature_dim}"
            )


@struct.dataclass
class PredictionHParams:
    lr: float = hparams.field(0.01, low=0, low_open=True, help="step size α of w")
    beta: float = hparams.field(0.005, low=0, help="step size β of the secondary weights h")
    gamma: float = hparams.field(0.99, low=0, high=1, high_open=True, help="discount γ")
    target_period: int = hparams.field(
        1, low=1, integer=True, help="steps between copies w⁻ ← w (semi-gradient loss; 1: none)"
    )


@struct.dataclass
class PredictionState:
    w: jax.Array
    h: jax.Array
    w_target: jax.Array
    """w⁻, the weights the semi-gradient loss bootstraps from."""
    env_state: Any
    key: jax.Array


def make_env(config: PredictionConfig) -> tuple[envs.FiniteMDP, envs.FiniteMDPParams]:
    return envs.make(config.env_id, **dict(config.env_kwargs))


def expected_batch(
    mdp: envs.FiniteMDPParams, pi: jax.Array, gamma: jax.Array, d_b: jax.Array | None = None
) -> losses.LinearBatch:
    """Every state once, with π's expected reward and expected next features, weighted so that
    the batch mean is the d_b-weighted sum (ρ = S·d_b(s); uniform d_b by default)."""
    num_states = mdp.num_states
    live = mdp.transition_probs * (1.0 - mdp.terminal.astype(jnp.float32))  # [S, A, S]
    weight = jnp.ones(num_states) if d_b is None else num_states * d_b
    return losses.LinearBatch(
        phi=mdp.features,
        reward=mdp.rewards @ pi,
        discount=jnp.full(num_states, gamma),
        phi_next=jnp.einsum("a,sat,td->sd", pi, live, mdp.features),
        rho=weight,
    )


def make_train(
    config: PredictionConfig, *, progress: Callable | None = None
) -> Callable[[jax.Array, PredictionHParams], tuple[PredictionState, dict[str, jax.Array]]]:
    """Build ``train(key, hparams, mdp=None) -> (final_state, {"weights": [T, d], "ve": [T]})``.

    ``mdp`` (default: the config's) may be any MDP of the same shapes — pass a batch of them
    under ``jax.vmap`` to run one compiled program over many MDPs.
    """
    del progress  # runs are short: no progress reports
    env, default_mdp = make_env(config)
    loss = losses.LINEAR_LOSSES[config.loss]
    pi = jnp.asarray(config.target_policy, jnp.float32)
    b = jnp.asarray(config.behaviour_policy, jnp.float32)
    num_states, d = env.num_states, env.feature_dim
    w0 = jnp.zeros(d) if config.initial_weights is None else jnp.asarray(config.initial_weights)

    def train(
        key: jax.Array, hp: PredictionHParams, mdp: envs.FiniteMDPParams | None = None
    ) -> tuple[PredictionState, dict]:
        mdp = default_mdp if mdp is None else mdp
        hp = hparams.to_arrays(hp)
        pi_table = jnp.tile(pi, (num_states, 1))
        v_pi = jnp.sum(dp.policy_evaluation(mdp, pi_table, hp.gamma) * pi_table, axis=-1)
        d_b = dp.state_action_distribution(mdp, jnp.tile(b, (num_states, 1))).sum(-1)
        k_reset, k_loop = jax.random.split(key)
        _, env_state = env.reset(k_reset, mdp)
        state = PredictionState(w=w0, h=jnp.zeros(d), w_target=w0, env_state=env_state, key=k_loop)

        def sample_batch(state: PredictionState) -> tuple[PredictionState, losses.LinearBatch]:
            key, k_act, k_step = jax.random.split(state.key, 3)
            s = state.env_state.state
            a = jax.random.choice(k_act, b.shape[0], p=b)
            _, env_state, r, term, _, info = env.step(k_step, state.env_state, a, mdp)
            batch = losses.LinearBatch(
                phi=mdp.features[s][None],
                reward=r[None],
                discount=(hp.gamma * (1.0 - term.astype(jnp.float32)))[None],
                phi_next=mdp.features[info["state"]][None],
                rho=(pi[a] / b[a])[None],
            )
            return state.replace(env_state=env_state, key=key), batch

        def step(state: PredictionState, t: jax.Array) -> tuple[PredictionState, dict]:
            if config.mode == "sample":
                state, batch = sample_batch(state)
            else:
                batch = expected_batch(mdp, pi, hp.gamma, d_b)
            w_target = jnp.where(t % hp.target_period == 0, state.w, state.w_target)
            if config.loss == "semi_gradient":  # bootstrap from w⁻: the target is a fixed label
                label = batch.reward + batch.discount * (batch.phi_next @ w_target)
                batch = batch.replace(reward=label, discount=jnp.zeros_like(batch.discount))
            grad_w, grad_h = jax.grad(loss, argnums=(0, 1))(state.w, state.h, batch)
            state = state.replace(
                w=state.w - hp.lr * grad_w, h=state.h - hp.beta * grad_h, w_target=w_target
            )
            ve = jnp.sum(d_b * jnp.square(v_pi - mdp.features @ state.w))
            return state, {"weights": state.w, "ve": ve}

        return jax.lax.scan(step, state, jnp.arange(config.num_steps))

    return train
