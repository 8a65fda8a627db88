"""DQN's source of batches: ε-greedy steps of the envs into a replay buffer (n-step items where
asked), sampled uniformly, by priority (Schaul et al. 2016) or with coverage of a finite MDP's
model (:func:`replay_source`); the config fields and hyperparameters it reads, declared here
(:data:`REPLAY_FIELDS`, :data:`REPLAY_HPARAMS`) with their checks."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import envs, policies, replay, sampling
from qlearn.algos import deep_q, rollout, sources
from qlearn.algos.learners import Update
from qlearn.algos.sources import Drawn, EnvLoop, Source, StepTrace, act, start_envs
from qlearn.envs.finite import FiniteMDPState
from qlearn.types import ConfigError, Params, Transition

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
    "replay_ratio": (
        None,
        "gradient updates per env step (summed over the envs; ≥ 1 or fractional), or None: "
        "train_every and updates_per_train say it. When set, leave those at 1: r·num_envs = "
        "p/q in lowest terms gives blocks of q vectorised steps and p updates (0.25 with 10 "
        "envs: 2 steps, then 5 updates)",
    ),
    "replay": (
        "uniform",
        "'uniform', 'prioritized' (proportional, Schaul et al. 2016: hparams per_alpha, "
        "per_beta, per_eps, config per_normalise; the loss must report LossOutput.priority, "
        "as the built-ins do) or "
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
        help="prioritised replay: p_i = ℓ_i + ε, ℓ_i the loss's priority: |δ_i| for "
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
    "dataset_fraction": dict(
        default=0.0,
        low=0,
        high=1,
        help="with config.dataset: the fraction of each replay batch drawn uniformly from the "
        "dataset instead (each sample with this probability; 0.5 is RLPD's symmetric "
        "sampling, Ball et al. 2023); uniform and coverage replay",
    ),
    "online_cql_alpha": dict(
        default=0.0,
        low=0,
        help="with config.dataset: CQL(H)'s α in the online updates (cql_alpha is the offline "
        "updates'); 0: plain TD once the envs are met, as naive fine-tuning; = cql_alpha: "
        "CQL throughout, as CQL's and Cal-QL's fine-tuning",
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


MAX_STEPS_PER_BLOCK = 1000
"""The most vectorised env steps a block of a ``replay_ratio`` may take (its q)."""


class Schedule(NamedTuple):
    """A replay source's iteration: ``train_every`` vectorised env steps, then
    ``updates_per_train`` updates; updates per env step = updates_per_train / (train_every ·
    num_envs)."""

    train_every: int
    updates_per_train: int


def schedule(config: Any) -> Schedule:
    """The iteration of ``config``: its ``train_every`` and ``updates_per_train``, or, where
    ``replay_ratio`` r is set, q steps and p updates with r·num_envs = p/q in lowest terms."""
    if config.replay_ratio is None:
        return Schedule(config.train_every, config.updates_per_train)
    ratio = Fraction(config.replay_ratio * config.num_envs).limit_denominator(MAX_STEPS_PER_BLOCK)
    return Schedule(ratio.denominator, ratio.numerator)


def _check_replay_ratio(config: Any) -> None:
    ratio = config.replay_ratio
    if ratio is None:
        return
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio < math.inf:
        raise ConfigError(f"config.replay_ratio = {ratio!r} must be a number > 0 (or None)")
    if (config.train_every, config.updates_per_train) != (1, 1):
        raise ConfigError(
            f"config.replay_ratio = {ratio} sets train_every and updates_per_train; leave them "
            f"at 1 (they are {config.train_every} and {config.updates_per_train})"
        )
    steps, updates = schedule(config)
    if updates < 1 or not math.isclose(updates / steps, ratio * config.num_envs, rel_tol=1e-9):
        raise ConfigError(
            f"config.replay_ratio = {ratio} × num_envs = {config.num_envs} must be a ratio p/q "
            f"of whole updates p to q ≤ {MAX_STEPS_PER_BLOCK} vectorised env steps"
        )


def check_replay_config(config: Any) -> None:
    """Raise :class:`~qlearn.types.ConfigError` unless the replay fields of ``config``
    (:data:`REPLAY_FIELDS`) are consistent with each other and with its env and budget (its
    ``iters_per_eval``: at least one iteration per evaluation interval)."""

    def fail(msg: str) -> None:
        raise ConfigError(msg)

    counts = ("total_steps", "buffer_size", "batch_size", "train_every", "updates_per_train")
    deep_q.check_counts(config, (*counts, "n_step"))
    deep_q.check_counts(config, ("learning_starts",), minimum=0)
    _check_replay_ratio(config)
    train_every = schedule(config).train_every
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
    if config.n_step > 1 and warmup_steps(config) + train_every < config.n_step:
        fail(
            f"config.learning_starts = {config.learning_starts} leaves the replay buffer "
            f"without a whole {config.n_step}-step item at the first update: it must be ≥ "
            f"{(config.n_step - train_every) * config.num_envs} (n_step − train_every) "
            "× num_envs"
        )
    if config.learning_starts >= config.total_steps:
        fail(
            f"config.learning_starts = {config.learning_starts} must be < "
            f"total_steps = {config.total_steps}"
        )
    if config.iters_per_eval < 1:
        need = (warmup_steps(config) + config.num_evals * train_every) * config.num_envs
        fail(
            f"config.total_steps = {config.total_steps} does not cover one update per "
            f"evaluation interval: it must be ≥ {need} (learning_starts + num_evals × "
            "train_every × num_envs)"
        )


@struct.dataclass
class Item:
    """What a replay source stores per slot: the transition and, where it records states (a
    finite MDP's probe), the state index of its ``obs`` (int32 []; else None)."""

    transition: Transition
    state: jax.Array | None = None


@struct.dataclass
class ReplayState:
    """A replay source's state: its envs, the buffer of :class:`Item` s, and for n-step items
    the last ``n`` one-step items of each env (leaves [n, N, ...]; an empty tuple for n = 1)."""

    loop: EnvLoop
    buffer: replay.ReplayBuffer
    window: Any = ()


def replay_step(
    prog: deep_q.Program, hp: Any, record_states: bool, params: Params, carry: tuple
) -> tuple[tuple, StepTrace | None]:
    """One ε-greedy step of the envs from ``carry`` = (state, key), its transitions stored
    (as the n-step transition of the step n − 1 ago once the window is full, for n > 1); with
    ``record_states`` each item stores the state index of its ``obs`` and the step is traced."""
    state, key = carry
    n_step, before = prog.config.n_step, state.loop.env_state
    key, loop, tr = act(prog, hp, params, state.loop, key)
    trace, item = None, Item(tr)
    if record_states:
        trace = StepTrace(before.state, tr.action)
        item = Item(tr, before.state)
    if n_step > 1:
        window = jax.tree.map(lambda w, x: jnp.concatenate([w[1:], x[None]]), state.window, item)
        full = state.loop.env_steps >= (n_step - 1) * prog.num_envs
        oldest = jax.tree.map(lambda w: w[0], window.state)
        item = Item(replay.n_step_transition(window.transition, hp.gamma), oldest)
        state = state.replace(window=window, buffer=replay.add(state.buffer, item, full))
    else:
        state = state.replace(buffer=replay.add(state.buffer, item))
    return (state.replace(loop=loop), key), trace


def example_transition(prog: deep_q.Program, loop: EnvLoop) -> Transition:
    """A one-step transition shaped like those the envs ``loop`` give (zeros; what an empty
    buffer is built from)."""
    masks = envs.action_masks(prog.env, prog.env_params, loop.env_state)
    return Transition(
        obs=loop.obs[0],
        action=jnp.int32(0),
        reward=jnp.float32(0),
        next_obs=loop.obs[0],
        terminated=jnp.bool_(False),
        truncated=jnp.bool_(False),
        steps=jnp.int32(1),
        next_action_mask=None if masks is None else masks[0],
    )


def empty_replay(prog: deep_q.Program, loop: EnvLoop, record_states: bool) -> ReplayState:
    """An empty replay of ``prog.config``'s kind (prioritised, with a min tree for
    ``per_normalise = 'buffer'``) for the transitions of the envs ``loop``, and for n > 1 an
    empty window of the last n one-step transitions of each env (oldest first)."""
    config = prog.config
    example = Item(example_transition(prog, loop), jnp.int32(0) if record_states else None)
    window: Any = ()
    if config.n_step > 1:
        window = jax.tree.map(
            lambda x: jnp.zeros((config.n_step, prog.num_envs, *x.shape), x.dtype), example
        )
    buffer = replay.init(
        example,
        config.buffer_size,
        prioritized=config.replay == "prioritized",
        track_min=config.per_normalise == "buffer",
    )
    return ReplayState(loop, buffer, window)


Dataset = tuple[Transition, Any]
"""A fixed dataset as a replay source mixes it in: its transitions (leaves [M, ...]) and, on a
finite MDP, each one's state (int32 [M]; else None)."""


def replay_batch(
    prog: deep_q.Program,
    hp: Any,
    reachable: Any,
    dataset: Dataset | None,
    state: ReplayState,
    x: dict[str, Any],
) -> tuple[Transition, Drawn]:
    """One update's batch from its words ``x["plan"]``: uniform (with ``x["model"]``, coverage
    replay's model samples over the ``reachable`` pairs, :func:`coverage_batch`; with
    ``x["dataset"]``, samples of the ``dataset``, :func:`dataset_batch`), or prioritised (β
    annealed from ``hp.per_beta`` to 1 over the run, the weights normalised as
    ``per_normalise`` says, the sampled slots in :attr:`Drawn.index`)."""
    config = prog.config
    if config.replay != "prioritized":
        items = replay.sample(state.buffer, x["plan"])
        if "model" in x:
            items = coverage_batch(prog, hp, reachable, items, x["model"])
        if "dataset" in x:
            items = dataset_batch(hp, dataset, items, x["dataset"])
        return items.transition, Drawn(state=items.state)
    beta = policies.linear_schedule(state.loop.env_steps, hp.per_beta, 1.0, config.total_steps)
    items, idx, weight = replay.sample_prioritized(
        state.buffer, x["plan"], beta, config.per_normalise
    )
    return items.transition.replace(weight=weight), Drawn(idx, items.state)


def check_priority(update: Update) -> None:
    """Raise :class:`~qlearn.types.ConfigError` (while tracing) unless the update reports the
    per-sample priorities prioritised replay needs."""
    if update.priority is None:
        raise ConfigError(
            "config.replay = 'prioritized' needs a loss that reports LossOutput.priority [B], "
            "each sample's new priority (the built-in losses do); this one does not"
        )


def priority_feedback(hp: Any, state: ReplayState, drawn: Drawn, update: Update) -> ReplayState:
    """A prioritised replay's feedback: the sampled slots ``drawn.index`` get the update's
    per-sample priorities (p = |ℓ| + ε, to the power α)."""
    check_priority(update)
    buffer = replay.update_priorities(
        state.buffer, drawn.index, update.priority, hp.per_alpha, hp.per_eps
    )
    return state.replace(buffer=buffer)


def replay_source(
    prog: deep_q.Program,
    hp: Any,
    *,
    record_states: bool = False,
    reachable: Any = None,
    dataset: Dataset | None = None,
) -> Source:
    """DQN's source (:func:`stored_steps_source`): an empty replay (:func:`empty_replay`)
    filled by ε-greedy env steps (:func:`replay_step`); ``batch``: :func:`replay_batch` (stream
    ``model`` for coverage replay over the ``reachable`` pairs [S, A]; stream ``dataset``
    where a ``dataset`` is mixed in, uniform and coverage replay only); ``feedback``: the new
    priorities of prioritised replay (:func:`priority_feedback`). With ``record_states`` (a
    finite MDP) each item stores the state index of its ``obs`` and every step is traced for
    the probes."""
    config = prog.config
    feedback = sources.no_feedback
    if config.replay == "prioritized":
        feedback = functools.partial(priority_feedback, hp)
    streams = ("model",) if config.replay == "coverage" else ()
    if dataset is not None and config.replay != "prioritized":
        streams += ("dataset",)
    return stored_steps_source(
        prog,
        functools.partial(replay_step, prog, hp, record_states),
        lambda loop: empty_replay(prog, loop, record_states),
        lambda state: replay.words_per_sample(state.buffer),
        functools.partial(replay_batch, prog, hp, reachable, dataset),
        feedback,
        streams,
    )


def stored_steps_source(
    prog: deep_q.Program,
    step: Callable[[Params, tuple], tuple[tuple, StepTrace | None]],
    empty: Callable[[EnvLoop], Any],
    words_per_sample: Callable[[Any], int],
    batch: Callable[[Any, dict[str, Any]], tuple[Any, Drawn]],
    feedback: Callable[[Any, Drawn, Update], Any],
    streams: tuple[str, ...] = (),
) -> Source:
    """A source that stores its env steps and draws batches from the store (DQN's replay, and
    R2D2's sequences). ``init``: the store ``empty(loop)`` of fresh envs, then
    ``learning_starts`` env steps of ``step(params, (state, key)) -> ((state, key), trace)``
    into it; ``next``: ``train_every`` steps, then the random words [U, batch_size,
    ``words_per_sample(state)``] of the iteration's U = ``updates_per_train`` batches."""
    config = prog.config
    train_every, updates_per_train = schedule(config)

    def init(params: Params, reset_key: jax.Array, key: jax.Array) -> tuple:
        carry = (empty(start_envs(prog, reset_key)), key)
        length = warmup_steps(config)
        (state, key), trace = jax.lax.scan(lambda c, _: step(params, c), carry, length=length)
        # the first interval's train_return / train_episodes cover its own episodes only
        loop = state.loop.replace(episodes=rollout.clear_completed(state.loop.episodes))
        return state.replace(loop=loop), key, trace

    def next_(state: Any, params: Params, key: jax.Array) -> tuple:
        (state, key), trace = jax.lax.scan(
            lambda c, _: step(params, c), (state, key), length=train_every
        )
        key, k_sample = jax.random.split(key)
        shape = (updates_per_train, config.batch_size, words_per_sample(state))
        return state, key, jax.random.bits(k_sample, shape, jnp.uint32), trace

    return Source(init, next_, batch, (updates_per_train,), feedback, streams)


def coverage_batch(
    prog: deep_q.Program,
    hp: Any,
    reachable: jax.Array,
    items: Item,
    key: jax.Array,
) -> Item:
    """Coverage replay on a finite MDP: each sample of the replayed ``items`` is replaced, with
    probability ``hp.coverage``, by a one-step transition drawn from the model at (s, a)
    uniform over the ``reachable`` pairs [S, A] (:func:`qlearn.dp.reachable_pairs`) — the
    loss's weighting becomes μ_r = (1 − c)·μ_buffer + c·uniform, mass on pairs the behaviour
    policy may never visit. The model's step is the env's own (``step_env``: s' ~ p(·|s, a),
    its reward and termination; never truncated)."""
    mdp, env, batch = prog.env_params, prog.env, items.transition
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
    )
    use = jax.random.uniform(k_mix, (size,)) < hp.coverage
    return replace_where(use, Item(model, None if items.state is None else s), items)


def dataset_batch(hp: Any, dataset: Dataset, items: Item, key: jax.Array) -> Item:
    """Offline data mixed into online replay (RLPD, Ball et al. 2023): each sample of the
    replayed ``items`` is replaced, with probability ``hp.dataset_fraction``, by a transition
    drawn uniformly from the ``dataset`` (exactly: :func:`qlearn.sampling.uniform_index`) — the
    loss's weighting becomes (1 − f)·μ_buffer + f·μ_data. Where the dataset keeps returns-to-go
    (Cal-QL), the replayed samples get −∞ (unknown) in their place."""
    data, states = dataset
    size = items.transition.action.shape[0]
    if data.return_to_go is not None:  # Cal-QL: the online samples' returns are unknown
        unknown = jnp.full((size,), -jnp.inf, data.return_to_go.dtype)
        items = items.replace(transition=items.transition.replace(return_to_go=unknown))
    words = jax.random.bits(key, (size, sampling.WORDS_PER_INDEX + 1), jnp.uint32)
    idx = sampling.uniform_index(words[:, :-1], data.action.shape[0])
    drawn = Item(jax.tree.map(lambda a: a[idx], data), None if items.state is None else states[idx])
    return replace_where(sampling.bernoulli(words[:, -1], hp.dataset_fraction), drawn, items)


def replace_where(use: jax.Array, new: Item, items: Item) -> Item:
    """``items`` (leaves [B, ...]) with sample b taken from ``new`` where ``use[b]`` (in the
    dtypes of ``items``)."""

    def pick(n: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(use.reshape(-1, *([1] * (b.ndim - 1))), n.astype(b.dtype), b)

    return jax.tree.map(pick, new, items)
