"""PQN (Gallici et al., "Simplifying Deep Temporal Difference Learning", ICLR 2025): parallel
Q-learning without a replay buffer or a target network — many envs, LayerNorm in the
Q-network, Q(λ) targets over short rollouts: ``make_train(config) -> train(key, hparams)``,
vmappable over seeds and hyperparameters like DQN.

One iteration:
  1. roll out T = ``rollout_steps`` steps of N = ``num_envs`` envs with ε-greedy actions,
     then evaluate max_a Q(s_{t+1}, a) of every *next* state in one batched forward pass (for
     a truncated step, of ``info["final_observation"]``, the state the time limit
     interrupted);
  2. Q(λ) targets by a reverse scan (:func:`q_lambda_targets`):
         G_t = r_t + γ(1 − terminated_t) [(1 − λ_t) max_a Q(s_{t+1}, a) + λ_t G_{t+1}],
     λ_t = λ(1 − truncated_t), G_T's continuation = max_a Q(s_T, a): a termination cuts the
     bootstrap, a truncation cuts the recursion but bootstraps from the final observation;
  3. ``num_epochs`` epochs of ``num_minibatches`` minibatches of the semi-gradient loss
     mean ℓ(sg(G) − Q(s, a; θ)) over the N·T transitions (shuffled each epoch).
Two of the three public implementations bootstrapped from the wrong state (purejaxql #12,
rejax #34); the targets here are tested against a numpy loop and rlax at every index.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from qlearn import envs, hparams, losses, networks, policies, targets
from qlearn.algos import deep_q, rollout
from qlearn.types import (
    ConfigError,
    Params,
    ReturnBatch,
    ReturnLossFn,
    Transition,
    config_field,
)


@dataclasses.dataclass(frozen=True)
class PQNConfig(envs.EnvConfig):
    """Static configuration of a PQN run (hashable, validated on construction).

    Defaults: CleanRL's PQN CartPole shape (4 envs × 128 steps, 4 epochs of 4 minibatches),
    with Adam lr 1e-3, the best of 1e-4 / 2.5e-4 / 1e-3 over 4 seeds × 200k steps here."""

    num_envs: int = config_field(4, "parallel environments N")
    rollout_steps: int = config_field(128, "steps T of each rollout (per env)")
    total_steps: int = config_field(500_000, "env steps per run (summed over the envs)")
    num_epochs: int = config_field(4, "passes over each rollout")
    num_minibatches: int = config_field(4, "minibatches per epoch (must divide N·T)")
    network: str = config_field(
        "mlp",
        "'mlp', 'cnn' (the MinAtar network) or 'nature_cnn' (the Nature DQN's strided convs, "
        "for images of at least 36×36)",
    )
    hidden_sizes: tuple[int, ...] = config_field(
        (128, 128),
        "MLP hidden widths (cnn: its dense width is the first; nature_cnn: its dense layers)",
    )
    activation: str = config_field("relu", f"MLP activation: {', '.join(networks.ACTIVATIONS)}")
    layer_norm: bool = config_field(True, "LayerNorm after each hidden layer (PQN's stabiliser)")
    loss: str | ReturnLossFn | tuple[str | ReturnLossFn, ...] = config_field(
        "mse",
        "'mse', 'huber', 'package.module:function', a λ-return loss function "
        "(qlearn.types.ReturnLossFn), or a tuple of these (hparam loss_index picks one: losses "
        "compared in one compile)",
    )
    num_evals: int = config_field(20, "evaluation points (metrics have this many time steps)")
    eval_episodes: int = config_field(10, "greedy episodes per evaluation")
    divergence_bound: float = config_field(
        1e6, "a run with |Q| above this (or NaN/inf) is diverged"
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(w) for w in self.hidden_sizes))
        if isinstance(self.loss, list):
            object.__setattr__(self, "loss", tuple(self.loss))
        object.__setattr__(self, "env_kwargs", envs.kwargs_tuple(self.env_kwargs))
        self._validate()

    def validate_hparams(self, hp: PQNHParams) -> None:
        """Checks of hyperparameters against this config (before anything compiles)."""
        deep_q.check_loss_index(self, hp)

    def _validate(self) -> None:
        def fail(msg: str) -> None:
            raise ConfigError(msg)

        if self.network == "linear":
            fail(
                "config.network = 'linear' is for DQN on finite MDPs; PQN takes 'mlp', 'cnn' or "
                "'nature_cnn'"
            )
        deep_q.check_shared(self)
        deep_q.check_counts(self, ("rollout_steps", "total_steps", "num_epochs", "num_minibatches"))
        if self.batch_size % self.num_minibatches:
            fail(
                f"config.num_minibatches = {self.num_minibatches} must divide the rollout batch "
                f"num_envs × rollout_steps = {self.batch_size}"
            )
        if self.iterations_per_eval < 1:
            fail(
                f"config.total_steps = {self.total_steps} is less than num_evals = "
                f"{self.num_evals} rollouts of {self.batch_size} steps"
            )
        try:
            losses.resolve_return_loss(self.loss)
        except ValueError as e:
            fail(str(e))

    @property
    def batch_size(self) -> int:
        """Transitions per rollout, N·T."""
        return self.num_envs * self.rollout_steps

    @property
    def iterations_per_eval(self) -> int:
        return self.total_steps // (self.num_evals * self.batch_size)

    @property
    def total_updates(self) -> int:
        """Gradient updates in a run: one per minibatch, epoch and rollout."""
        return self.iterations_per_eval * self.num_evals * self.num_epochs * self.num_minibatches

    @property
    def actual_total_steps(self) -> int:
        """Env steps actually run: whole rollouts in whole evaluation intervals."""
        return self.iterations_per_eval * self.num_evals * self.batch_size


@struct.dataclass
class PQNHParams:
    lr: float = hparams.field(1e-3, low=0, low_open=True, help="Adam step size")
    gamma: float = hparams.field(0.99, low=0, high=1, help="discount γ")
    lam: float = hparams.field(0.65, low=0, high=1, help="λ of the Q(λ) targets")
    eps_start: float = hparams.field(1.0, low=0, high=1, help="initial ε")
    eps_end: float = hparams.field(0.05, low=0, high=1, help="final ε")
    eps_decay_fraction: float = hparams.field(
        0.2, low=0, high=1, help="fraction of total_steps over which ε decays linearly"
    )
    max_grad_norm: float = hparams.field(
        10.0, low=0, low_open=True, help="global-norm gradient clipping"
    )
    lr_decay: float = hparams.field(
        0.0,
        low=0,
        high=1,
        help="lr falls linearly to lr·(1 − lr_decay) over the run (purejaxql's MinAtar: 1)",
    )
    huber_delta: float = hparams.field(1.0, low=0, low_open=True, help="Huber threshold κ")
    loss_index: int = hparams.field(
        0, low=0, integer=True, help="which loss of a tuple config.loss to train with"
    )


@struct.dataclass
class PQNState:
    params: Params
    opt_state: optax.OptState
    env_state: Any
    obs: jax.Array
    key: jax.Array
    env_steps: jax.Array
    episodes: rollout.EpisodeStats


def make_optimizer(config: PQNConfig, hp: PQNHParams) -> optax.GradientTransformation:
    """Adam after global-norm clipping; the step size of update u (counted from 0) of the run's
    U = :attr:`PQNConfig.total_updates` is lr · (1 − lr_decay · u / U)."""

    def step_size(count: jax.Array) -> jax.Array:
        return hp.lr * (1.0 - hp.lr_decay * count / config.total_updates)

    return optax.chain(optax.clip_by_global_norm(hp.max_grad_norm), optax.adam(step_size))


def q_lambda_targets(
    reward: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    q_next_max: jax.Array,
    gamma: jax.Array | float,
    lam: jax.Array | float,
) -> jax.Array:
    """Q(λ) targets of a rollout, all arrays [T, N] (time first):

        G_t = r_t + γ(1 − terminated_t) [(1 − λ_t) q_next_max_t + λ_t G_{t+1}],
        λ_t = λ(1 − truncated_t),  G_T := q_next_max_{T−1} (the bootstrap past the end),

    where ``q_next_max_t = max_a Q(s_{t+1}, a)`` is the value of the state reached at step t
    (the final observation when the step was truncated). λ = 0 gives the one-step Q-learning
    targets; λ = 1 the discounted return to the end of each episode or of the rollout.
    """
    discount = gamma * (1.0 - terminated.astype(jnp.float32))
    lam_t = lam * (1.0 - truncated.astype(jnp.float32))
    return jax.vmap(targets.lambda_returns, in_axes=1, out_axes=1)(
        reward, discount, q_next_max, lam_t
    )


def make_train(
    config: PQNConfig, *, progress: deep_q.ProgressFn | None = None
) -> Callable[[jax.Array, PQNHParams], tuple[PQNState, dict[str, jax.Array]]]:
    """Build ``train(key, hparams) -> (final_state, metrics)`` (:func:`train`); metrics have
    shape [num_evals]: env_steps, eval_return (greedy, ε = 0, on separate envs), train_return,
    train_episodes, epsilon, loss, q_mean, target_mean, td_abs (means over the interval's
    updates), q_abs_max, diverged — the names DQN uses, so runs, sweeps and plots treat both
    alike."""
    prog = deep_q.program(config, losses.resolve_return_loss(config.loss), progress)
    return functools.partial(train, prog)


def train(
    prog: deep_q.Program, key: jax.Array, hp: PQNHParams
) -> tuple[PQNState, dict[str, jax.Array]]:
    """One whole run of ``prog`` with hyperparameters ``hp``: ``num_evals`` intervals."""
    config = prog.config
    hp = hparams.to_arrays(hp)
    k_init, k_reset, k_loop, k_eval = jax.random.split(key, 4)
    params = prog.network.init(k_init, jnp.zeros((1, *prog.obs_shape)))
    obs, env_state = rollout.reset_envs(prog.env, prog.env_params, k_reset, config.num_envs)
    state = PQNState(
        params=params,
        opt_state=make_optimizer(config, hp).init(params),
        env_state=env_state,
        obs=obs,
        key=k_loop,
        env_steps=jnp.zeros((), jnp.int32),
        episodes=rollout.init_episode_stats(config.num_envs),
    )
    eval_keys = jax.random.split(k_eval, config.num_evals)
    index = jnp.arange(config.num_evals)
    return jax.lax.scan(functools.partial(interval, prog, key, hp), state, (eval_keys, index))


def env_step(
    prog: deep_q.Program, hp: PQNHParams, state: PQNState, _: Any = None
) -> tuple[PQNState, Transition]:
    """One ε-greedy step of the N envs; returns its transitions [N]."""
    epsilon = deep_q.epsilon_schedule(prog.config, hp)(state.env_steps)
    key, _, obs, env_state, tr = deep_q.explore_step(prog, hp, state, epsilon)
    state = state.replace(
        key=key,
        obs=obs,
        env_state=env_state,
        env_steps=state.env_steps + prog.num_envs,
        episodes=rollout.record(state.episodes, tr.reward, tr.terminated | tr.truncated),
    )
    return state, tr


def rollout_batch(
    prog: deep_q.Program, hp: PQNHParams, params: Params, tr: Transition
) -> ReturnBatch:
    """The N·T training pairs of a rollout ``tr`` (leaves [T, N, ...]): observations, actions
    and their Q(λ) targets (:func:`q_lambda_targets`) under ``params``, flattened."""
    config, obs_shape = prog.config, prog.obs_shape
    # The parameters are fixed during the rollout, so the values of the T·N successor
    # states are one batched forward pass after it rather than T small ones inside it.
    next_obs = tr.next_obs.reshape(config.batch_size, *obs_shape)
    q_next = prog.q_function(hp)(params, next_obs)
    if tr.next_action_mask is not None:  # max over the actions available there
        mask = tr.next_action_mask.reshape(config.batch_size, -1)
        q_next = policies.masked(q_next, mask)
    q_next_max = jnp.max(q_next, axis=-1).reshape(config.rollout_steps, config.num_envs)
    g = q_lambda_targets(tr.reward, tr.terminated, tr.truncated, q_next_max, hp.gamma, hp.lam)
    return ReturnBatch(
        obs=tr.obs.reshape(config.batch_size, *obs_shape),
        action=tr.action.reshape(-1),
        target=g.reshape(-1),
    )


def update(
    prog: deep_q.Program, hp: PQNHParams, carry: tuple, batch: ReturnBatch
) -> tuple[tuple, dict[str, jax.Array]]:
    """One gradient step of the loss on a minibatch; ``carry`` is (params, opt_state)."""
    params, opt_state = carry
    (loss, aux), grads = jax.value_and_grad(prog.loss, argnums=1, has_aux=True)(
        prog.q_function(hp), params, batch, hp
    )
    updates, opt_state = make_optimizer(prog.config, hp).update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), {"loss": loss, **aux}


def epoch(
    prog: deep_q.Program, hp: PQNHParams, flat: ReturnBatch, carry: tuple, key: jax.Array
) -> tuple[tuple, dict[str, jax.Array]]:
    """One pass over the rollout's pairs ``flat`` in ``num_minibatches`` shuffled minibatches."""
    config = prog.config
    minibatch = config.batch_size // config.num_minibatches
    order = jax.random.permutation(key, config.batch_size)
    batches = jax.tree.map(
        lambda x: x[order].reshape(config.num_minibatches, minibatch, *x.shape[1:]), flat
    )
    return jax.lax.scan(functools.partial(update, prog, hp), carry, batches)


def iteration(
    prog: deep_q.Program, hp: PQNHParams, state: PQNState, _: Any = None
) -> tuple[PQNState, dict[str, jax.Array]]:
    """A rollout of T steps, then ``num_epochs`` epochs on its pairs (metrics [E, M])."""
    config = prog.config
    body = functools.partial(env_step, prog, hp)
    state, tr = jax.lax.scan(body, state, length=config.rollout_steps)  # [T, N]
    flat = rollout_batch(prog, hp, state.params, tr)
    key, k_epochs = jax.random.split(state.key)
    (params, opt_state), m = jax.lax.scan(
        functools.partial(epoch, prog, hp, flat),
        (state.params, state.opt_state),
        jax.random.split(k_epochs, config.num_epochs),
    )
    return state.replace(key=key, params=params, opt_state=opt_state), m


def interval(
    prog: deep_q.Program,
    key: jax.Array,
    hp: PQNHParams,
    state: PQNState,
    xs: tuple[jax.Array, jax.Array],
) -> tuple[PQNState, dict[str, jax.Array]]:
    """One evaluation interval of the run of ``key``: ``iterations_per_eval`` iterations, then
    the greedy evaluation with key ``xs[0]`` and the interval's metrics (``xs[1]``: its
    index)."""
    k_eval_i, index = xs
    before = state.env_steps
    body = functools.partial(iteration, prog, hp)
    state, m = jax.lax.scan(body, state, length=prog.config.iterations_per_eval)
    eval_return, metrics = deep_q.evaluate_interval(prog, hp, state, k_eval_i, m)
    deep_q.report(prog, key, hp, index, state.env_steps - before, eval_return, metrics)
    state = state.replace(episodes=rollout.clear_completed(state.episodes))
    return state, metrics


ALGORITHM = deep_q.algorithm(
    name="pqn",
    config=PQNConfig,
    hparams=PQNHParams,
    make_train=make_train,
    validate_hparams=PQNConfig.validate_hparams,
)
