"""Sources of batches: where a deep Q-learner's data come from. A source owns the envs it acts
in (:class:`EnvLoop`) and whatever it keeps of their transitions.

A source is a record of pure functions (:class:`Source`), closed over the run's
hyperparameters, like an optax ``GradientTransformation``:

    init(params, reset_key, loop_key) -> (state, loop_key, trace)
        the envs, and whatever is collected before the first update (DQN's warm-up);
    next(state, params, loop_key) -> (state, loop_key, plan, trace)
        act in the envs with the learner's ``params``, and plan the iteration's U updates
        (``plan``: leaves [U, ...], the driver scans over it);
    batch(state, x) -> (batch, ctx)
        the batch of one update, from its slice ``x["plan"]`` of the plan and its keys;
    feedback(state, ctx, update) -> state
        what the update tells the source (a prioritised replay's new priorities).

``trace`` is what the env steps show the probes (:mod:`qlearn.algos.probes`): a
:class:`StepTrace` of each step's (state, action) where the source was asked to record it, else
None. Two sources: :func:`replay_source` (DQN: ε-greedy steps into a replay buffer, uniform,
prioritised or coverage sampling, n-step items) and :func:`rollout_source` (PQN: on-policy
rollouts with their Q(λ) targets, in shuffled minibatches).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import envs, policies, replay, targets
from qlearn.algos import deep_q, rollout
from qlearn.algos.learners import Update
from qlearn.envs.finite import FiniteMDPState
from qlearn.types import ConfigError, Params, ReturnBatch, Transition

REPLAY_FIELDS: dict[str, tuple[Any, str]] = {
    "learning_starts": (
        5_000,
        "env steps collected before the first update",
    ),
    "buffer_size": (
        50_000,
        "replay capacity in transitions",
    ),
    "batch_size": (
        64,
        "transitions per gradient update",
    ),
    "train_every": (
        1,
        "vectorised env steps between blocks of updates",
    ),
    "n_step": (
        1,
        "n of n-step returns: replay stores n-step transitions",
    ),
    "updates_per_train": (
        1,
        "gradient updates per block",
    ),
    "replay": (
        "uniform",
        "'uniform', 'prioritized' (proportional, Schaul et al. 2016: hparams per_alpha, "
        "per_beta, per_eps, config per_normalise; the loss must report aux['priority'], as "
        "the built-ins do) or "
        "'coverage' (finite MDPs: uniform replay with a fraction hparam coverage of each batch "
        "drawn from the model at (s, a) uniform over the reachable pairs)",
    ),
    "per_normalise": (
        "batch",
        "prioritised replay (ignored otherwise): what the importance weights (N·P(i))^−β are "
        "divided by: 'batch' "
        "(their max over the batch, as Dopamine; biased even at β = 1) or 'buffer' (their max "
        "over the buffer, (N·min P)^−β, kept by a min tree: one constant per step, so at β = 1 "
        "the expected gradient is a positive multiple of uniform replay's)",
    ),
}
"""The static fields of a replay source (name -> (default, help)), declared by a config with
:func:`qlearn.types.table_field`."""


REPLAY_HPARAMS: dict[str, dict[str, Any]] = {
    "per_alpha": dict(
        default=0.6,
        low=0,
        help="prioritised replay: P(i) ∝ p_iᵅ (0: uniform)",
    ),
    "per_beta": dict(
        default=0.4,
        low=0,
        high=1,
        help="prioritised replay: importance-sampling exponent β at the start, annealed "
        "linearly to 1 over total_steps",
    ),
    "per_eps": dict(
        default=1e-6,
        low=0,
        low_open=True,
        help="prioritised replay: p_i = ℓ_i + ε, ℓ_i the loss's aux['priority']: |δ_i| for "
        "huber, mse, residual, dqn_reg, munchausen; the sample's cross-entropy for c51, "
        "hl_gauss, two_hot; its quantile Huber loss for qr, iqn",
    ),
    "coverage": dict(
        default=0.5,
        low=0,
        high=1,
        help="coverage replay: the fraction of each batch drawn from the model at (s, a) "
        "uniform over the reachable pairs (1: all of it)",
    ),
}
"""The hyperparameters of a replay source (name -> :func:`qlearn.hparams.field` keywords),
declared with :func:`qlearn.hparams.table_field`."""


REPLAYS = ("uniform", "prioritized", "coverage")
"""The sampling rules of a replay source (``config.replay``)."""


def warmup_steps(config: Any) -> int:
    """The vectorised env steps a replay source takes before the first update:
    ⌈learning_starts / num_envs⌉."""
    return math.ceil(config.learning_starts / config.num_envs)


def check_replay_config(config: Any) -> None:
    """Raise :class:`~qlearn.types.ConfigError` unless the replay fields of ``config``
    (:data:`REPLAY_FIELDS`) are consistent with each other and with its env and budget."""

    def fail(msg: str) -> None:
        raise ConfigError(msg)

    counts = ("total_steps", "buffer_size", "batch_size", "train_every", "updates_per_train")
    deep_q.check_counts(config, (*counts, "n_step"))
    deep_q.check_counts(config, ("learning_starts",), minimum=0)
    if config.replay not in REPLAYS:
        fail(f"config.replay = '{config.replay}' must be one of {', '.join(REPLAYS)}")
    if config.per_normalise not in replay.NORMALISATIONS:
        fail(
            f"config.per_normalise = '{config.per_normalise}' must be one of "
            f"{', '.join(replay.NORMALISATIONS)}"
        )
    if config.replay == "coverage" and not envs.is_finite(config.env_id):
        fail(
            f"config.replay = 'coverage' draws transitions from the model of a finite MDP "
            f"(Garnet, CliffWalking, ...); {config.env_id} has none"
        )
    if config.batch_size > config.buffer_size:
        fail(
            f"config.batch_size = {config.batch_size} must be ≤ buffer_size = {config.buffer_size}"
        )
    if config.num_envs * config.n_step > config.buffer_size:
        fail(
            f"config.num_envs × n_step = {config.num_envs * config.n_step} must be ≤ "
            f"buffer_size = {config.buffer_size}"
        )
    if config.n_step > 1 and warmup_steps(config) + config.train_every < config.n_step:
        fail(
            f"config.learning_starts = {config.learning_starts} leaves the replay buffer "
            f"without a whole {config.n_step}-step item at the first update: it must be ≥ "
            f"{(config.n_step - config.train_every) * config.num_envs} (n_step − train_every) "
            "× num_envs"
        )
    if config.learning_starts >= config.total_steps:
        fail(
            f"config.learning_starts = {config.learning_starts} must be < "
            f"total_steps = {config.total_steps}"
        )


@struct.dataclass
class EnvLoop:
    """The envs a source acts in: their state, the observations to act on [N, ...], the env
    steps taken (summed over the envs) and the training episodes' returns."""

    env_state: Any
    obs: jax.Array
    env_steps: jax.Array
    episodes: rollout.EpisodeStats


@struct.dataclass
class StepTrace:
    """The finite MDP's state and the action of each env step a source took, int32 [k, N]."""

    state: jax.Array
    action: jax.Array


def _no_feedback(state: Any, ctx: Any, update: Update) -> Any:
    """The default :attr:`Source.feedback`: the updates tell the source nothing."""
    return state


@dataclasses.dataclass(frozen=True)
class Source:
    """The source contract (see the module docstring)."""

    init: Callable[[Params, jax.Array, jax.Array], tuple[Any, jax.Array, StepTrace | None]]
    next: Callable[[Any, Params, jax.Array], tuple[Any, jax.Array, Any, StepTrace | None]]
    batch: Callable[[Any, dict[str, Any]], tuple[Any, Any]]
    plan_shape: tuple[int, ...]
    """how the U updates of an iteration are arranged, for their metrics (PQN: epochs ×
    minibatches)."""
    feedback: Callable[[Any, Any, Update], Any] = _no_feedback
    streams: tuple[str, ...] = ()
    """the per-update key streams ``batch`` reads."""


def start_envs(prog: deep_q.Program, key: jax.Array) -> EnvLoop:
    """``prog.config.num_envs`` fresh envs, nothing counted yet."""
    num_envs = prog.config.num_envs
    obs, env_state = rollout.reset_envs(prog.env, prog.env_params, key, num_envs)
    zero = jnp.zeros((), jnp.int32)
    return EnvLoop(env_state, obs, zero, rollout.init_episode_stats(num_envs))


def act(
    prog: deep_q.Program, hp: Any, params: Params, loop: EnvLoop, key: jax.Array
) -> tuple[jax.Array, EnvLoop, Transition]:
    """One ε-greedy step of the envs at ε(``loop.env_steps``) (:func:`deep_q.explore_step`):
    ``(key', loop', transitions [N])``."""
    epsilon = deep_q.epsilon_schedule(prog.config, hp)(loop.env_steps)
    key, _, obs, env_state, tr = deep_q.explore_step(
        prog, hp, params, key, loop.env_state, loop.obs, epsilon
    )
    done = tr.terminated | tr.truncated
    loop = EnvLoop(
        env_state,
        obs,
        loop.env_steps + prog.num_envs,
        rollout.record(loop.episodes, tr.reward, done),
    )
    return key, loop, tr


# -- online replay (DQN) ------------------------------------------------------------------


@struct.dataclass
class ReplayState:
    """A replay source's state: its envs, the buffer, and for n-step items the last ``n``
    one-step transitions of each env (leaves [n, N, ...]; an empty tuple for n = 1)."""

    loop: EnvLoop
    buffer: replay.ReplayBuffer
    window: Any = ()


def replay_source(
    prog: deep_q.Program, hp: Any, *, record_states: bool = False, reachable: Any = None
) -> Source:
    """DQN's source. ``init``: empty replay, then ``learning_starts`` env steps (ε-greedy)
    into it; ``next``: ``train_every`` env steps, then the random words of the
    ``updates_per_train`` batches; ``batch``: uniform, prioritised (β annealed from
    ``hp.per_beta`` to 1 over the run, weights normalised as ``per_normalise`` says; the
    update's priorities fed back) or coverage replay (:func:`coverage_batch` over the
    ``reachable`` pairs [S, A], stream ``model``). With ``record_states`` (a finite MDP) each
    item stores the state index of its ``obs`` and every step is traced for the probes."""
    config = prog.config
    n_step, prioritized = config.n_step, config.replay == "prioritized"

    def step(params: Params, carry: tuple, _: Any = None) -> tuple[tuple, StepTrace | None]:
        state, key = carry
        before = state.loop.env_state
        key, loop, tr = act(prog, hp, params, state.loop, key)
        trace = None
        if record_states:
            trace = StepTrace(before.state, tr.action)
            tr = tr.replace(state_index=before.state)
        if n_step > 1:  # store the n-step transition of the step n − 1 ago
            window = jax.tree.map(lambda w, x: jnp.concatenate([w[1:], x[None]]), state.window, tr)
            full = state.loop.env_steps >= (n_step - 1) * prog.num_envs
            item = replay.n_step_transition(window, hp.gamma)
            state = state.replace(window=window, buffer=replay.add(state.buffer, item, full))
        else:
            state = state.replace(buffer=replay.add(state.buffer, tr))
        return (state.replace(loop=loop), key), trace

    def init(params: Params, reset_key: jax.Array, key: jax.Array) -> tuple:
        loop = start_envs(prog, reset_key)
        masks = envs.action_masks(prog.env, prog.env_params, loop.env_state)
        example = Transition(
            obs=loop.obs[0],
            action=jnp.int32(0),
            reward=jnp.float32(0),
            next_obs=loop.obs[0],
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            steps=jnp.int32(1),
            next_action_mask=None if masks is None else masks[0],
            state_index=jnp.int32(0) if record_states else None,
        )
        window: Any = ()
        if n_step > 1:  # the last n one-step transitions of each env, oldest first
            window = jax.tree.map(
                lambda x: jnp.zeros((n_step, prog.num_envs, *x.shape), x.dtype), example
            )
        buffer = replay.init(
            example,
            config.buffer_size,
            prioritized=prioritized,
            track_min=config.per_normalise == "buffer",
        )
        steps = warmup_steps(config)
        carry = (ReplayState(loop, buffer, window), key)
        (state, key), trace = jax.lax.scan(lambda c, _: step(params, c), carry, length=steps)
        # the first interval's train_return / train_episodes cover its own episodes only
        loop = state.loop.replace(episodes=rollout.clear_completed(state.loop.episodes))
        return state.replace(loop=loop), key, trace

    def next_(state: ReplayState, params: Params, key: jax.Array) -> tuple:
        carry = (state, key)
        (state, key), trace = jax.lax.scan(
            lambda c, _: step(params, c), carry, length=config.train_every
        )
        key, k_sample = jax.random.split(key)
        shape = (config.updates_per_train, config.batch_size)
        words_per_sample = replay.words_per_sample(state.buffer)
        words = jax.random.bits(k_sample, (*shape, words_per_sample), jnp.uint32)
        return state, key, words, trace

    def batch(state: ReplayState, x: dict[str, Any]) -> tuple[Transition, Any]:
        if not prioritized:
            items = replay.sample(state.buffer, x["plan"])
            if "model" in x:
                items = coverage_batch(prog, hp, reachable, items, x["model"])
            return items, None
        beta = policies.linear_schedule(state.loop.env_steps, hp.per_beta, 1.0, config.total_steps)
        return replay.sample_prioritized(state.buffer, x["plan"], beta, config.per_normalise)

    def feedback(state: ReplayState, idx: Any, update: Update) -> ReplayState:
        if not prioritized:
            return state
        if update.priority is None:
            raise ConfigError(
                "config.replay = 'prioritized' needs a loss that reports aux['priority'] [B], "
                "each sample's new priority (the built-in losses do); this one does not"
            )
        buffer = replay.update_priorities(
            state.buffer, idx, update.priority, hp.per_alpha, hp.per_eps
        )
        return state.replace(buffer=buffer)

    streams = ("model",) if config.replay == "coverage" else ()
    return Source(init, next_, batch, (config.updates_per_train,), feedback, streams)


def coverage_batch(
    prog: deep_q.Program,
    hp: Any,
    reachable: jax.Array,
    batch: Transition,
    key: jax.Array,
) -> Transition:
    """Coverage replay on a finite MDP: each sample of the replay ``batch`` is replaced, with
    probability ``hp.coverage``, by a one-step transition drawn from the model at (s, a)
    uniform over the ``reachable`` pairs [S, A] (:func:`qlearn.dp.reachable_pairs`) — the
    loss's weighting becomes μ_r = (1 − c)·μ_buffer + c·uniform, mass on pairs the behaviour
    policy may never visit. The model's step is the env's own (``step_env``: s' ~ p(·|s, a),
    its reward and termination; never truncated)."""
    mdp, env = prog.env_params, prog.env
    size = batch.action.shape[0]
    k_pair, k_step, k_mix = jax.random.split(key, 3)
    flat = reachable.reshape(-1).astype(jnp.float32)
    pair = jax.random.choice(k_pair, flat.size, (size,), p=flat / jnp.sum(flat))
    s, a = pair // mdp.num_actions, pair % mdp.num_actions
    zero = jnp.zeros((size,), jnp.int32)
    obs, next_state, reward, terminated, _ = jax.vmap(env.step_env, (0, 0, 0, None))(
        jax.random.split(k_step, size), FiniteMDPState(s, zero), a, mdp
    )
    model = batch.replace(
        obs=mdp.features[s],
        action=a,
        reward=reward,
        next_obs=obs,
        terminated=terminated,
        truncated=jnp.zeros((size,), bool),
        steps=jnp.ones((size,), jnp.int32),
        next_action_mask=None
        if batch.next_action_mask is None
        else mdp.action_mask[next_state.state],
        state_index=s,
    )
    use = jax.random.uniform(k_mix, (size,)) < hp.coverage

    def mix(m: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(use.reshape(-1, *([1] * (b.ndim - 1))), m.astype(b.dtype), b)

    return jax.tree.map(mix, model, batch)


# -- on-policy rollouts (PQN) -------------------------------------------------------------


@struct.dataclass
class RolloutState:
    """A rollout source's state: its envs (a rollout is used up by the iteration that made
    it, so nothing else is kept)."""

    loop: EnvLoop


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


def rollout_batch(prog: deep_q.Program, hp: Any, params: Params, tr: Transition) -> ReturnBatch:
    """The N·T training pairs of a rollout ``tr`` (leaves [T, N, ...]): observations, actions
    and their Q(λ) targets (:func:`q_lambda_targets`) under ``params``, flattened."""
    config, obs_shape = prog.config, prog.obs_shape
    size = config.num_envs * config.rollout_steps
    # The parameters are fixed during the rollout, so the values of the T·N successor
    # states are one batched forward pass after it rather than T small ones inside it.
    q_next = prog.q_function(hp)(params, tr.next_obs.reshape(size, *obs_shape))
    if tr.next_action_mask is not None:  # max over the actions available there
        q_next = policies.masked(q_next, tr.next_action_mask.reshape(size, -1))
    q_next_max = jnp.max(q_next, axis=-1).reshape(config.rollout_steps, config.num_envs)
    g = q_lambda_targets(tr.reward, tr.terminated, tr.truncated, q_next_max, hp.gamma, hp.lam)
    return ReturnBatch(
        obs=tr.obs.reshape(size, *obs_shape), action=tr.action.reshape(-1), target=g.reshape(-1)
    )


def rollout_source(prog: deep_q.Program, hp: Any) -> Source:
    """PQN's source. ``next``: a rollout of T = ``rollout_steps`` ε-greedy steps of the N
    envs with the learner's parameters, its Q(λ) targets under the same parameters
    (:func:`rollout_batch`), and ``num_epochs`` shuffles of its N·T pairs, each cut into
    ``num_minibatches`` minibatches M: the plan is the minibatches themselves, leaves
    [epochs·M, N·T / M, ...] (every epoch's copy at once: the updates read them as scan
    slices, which keeps the arithmetic of nested epoch and minibatch loops bitwise)."""
    config = prog.config
    size = config.num_envs * config.rollout_steps
    epochs, minibatches = config.num_epochs, config.num_minibatches

    def init(params: Params, reset_key: jax.Array, key: jax.Array) -> tuple:
        return RolloutState(start_envs(prog, reset_key)), key, None

    def next_(state: RolloutState, params: Params, key: jax.Array) -> tuple:
        def step(carry: tuple, _: Any) -> tuple[tuple, Transition]:
            loop, key = carry
            key, loop, tr = act(prog, hp, params, loop, key)
            return (loop, key), tr

        (loop, key), tr = jax.lax.scan(step, (state.loop, key), length=config.rollout_steps)
        data = rollout_batch(prog, hp, params, tr)
        key, k_epochs = jax.random.split(key)
        orders = jax.vmap(lambda k: jax.random.permutation(k, size))(
            jax.random.split(k_epochs, epochs)
        )
        order = orders.reshape(epochs * minibatches, size // minibatches)
        return RolloutState(loop), key, jax.tree.map(lambda v: v[order], data), None

    def batch(state: RolloutState, x: dict[str, Any]) -> tuple[ReturnBatch, None]:
        return x["plan"], None

    return Source(init, next_, batch, (epochs, minibatches))
