"""R2D2's source of batches (Kapturowski et al. 2019): ε-greedy steps of the envs with a
recurrent Q-network, each stored with the carry the network had before it, replayed as
sequences of ``sequence_length`` steps (:mod:`qlearn.sequence_replay`) — uniformly or by the
η-mixture of their steps' |δ| — whose first ``burn_in`` steps only warm the stored carry up.
The trained steps reach the learner as n-step rows (:func:`qlearn.sequence_replay.n_step_rows`)
of a :class:`~qlearn.recurrent.SequenceBatch`, so every replay loss trains a recurrent network
unchanged. The config fields and hyperparameters it reads are declared here
(:data:`SEQUENCE_FIELDS`, :data:`SEQUENCE_HPARAMS`) with their checks; the rest (buffer and
batch sizes, warm-up, schedule, prioritised replay's α, β, ε) are the replay source's.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import policies, recurrent, sequence_replay
from qlearn.algos import deep_q, replay_source, sources
from qlearn.algos.learners import Update
from qlearn.algos.sources import Drawn, EnvLoop, Source, act
from qlearn.types import ConfigError, Params, Transition

SEQUENCE_FIELDS: dict[str, tuple[Any, str]] = {
    "sequence_length": (
        40,
        "core ≠ 'none' (R2D2-style replay): steps L of a replayed sequence (R2D2: 80); "
        "batch_size then counts sequences",
    ),
    "burn_in": (
        10,
        "core ≠ 'none': the first steps of a sequence, unrolled from its stored carry to warm "
        "the memory up, without gradient or loss (R2D2: 40)",
    ),
    "sequence_overlap": (
        20,
        "core ≠ 'none': the steps consecutive sequences of an env share; one starts every "
        "sequence_length − sequence_overlap steps (R2D2: 40)",
    ),
}
"""The static fields of a sequence source (name -> (default, help))."""

SEQUENCE_HPARAMS: dict[str, dict[str, Any]] = {
    "per_eta": dict(
        default=0.9,
        low=0,
        high=1,
        help="prioritised sequence replay (core ≠ 'none'): a sequence's priority is "
        "η·max_t |δ_t| + (1 − η)·mean_t |δ_t| over its trained steps (R2D2: 0.9)",
    ),
}
"""The hyperparameters of a sequence source (name -> :func:`qlearn.hparams.field` keywords)."""


def period(config: Any) -> int:
    """P, the steps between the starts of an env's consecutive sequences: L − overlap."""
    return config.sequence_length - config.sequence_overlap


def check_sequence_config(config: Any) -> None:
    """Raise :class:`~qlearn.types.ConfigError` unless the sequence fields of a config with a
    recurrent core fit each other, its buffer, warm-up and replay (called after
    :func:`qlearn.algos.replay_source.check_replay_config`)."""

    def fail(msg: str) -> None:
        raise ConfigError(msg)

    length, burn_in, overlap = config.sequence_length, config.burn_in, config.sequence_overlap
    deep_q.check_counts(config, ("sequence_length",))
    deep_q.check_counts(config, ("burn_in", "sequence_overlap"), minimum=0)
    if burn_in >= length:
        fail(f"config.burn_in = {burn_in} must be < sequence_length = {length}")
    if overlap >= length:
        fail(f"config.sequence_overlap = {overlap} must be < sequence_length = {length}")
    if config.n_step > length - burn_in:
        fail(
            f"config.n_step = {config.n_step} must be ≤ sequence_length − burn_in = "
            f"{length - burn_in} (the trained steps of a sequence)"
        )
    per_env = config.buffer_size // config.num_envs
    if per_env // period(config) * period(config) < length + period(config):
        fail(
            f"config.buffer_size = {config.buffer_size} holds {per_env} steps of each of the "
            f"{config.num_envs} envs; a sequence replay needs sequence_length + (sequence_length "
            f"− sequence_overlap) = {length + period(config)} of each"
        )
    if replay_source.warmup_steps(config) + replay_source.schedule(config).train_every < length:
        fail(
            f"config.learning_starts = {config.learning_starts} leaves no whole sequence of "
            f"{length} steps at the first update: it must be ≥ (sequence_length − train_every) "
            "× num_envs"
        )
    if config.replay not in ("uniform", "prioritized"):
        fail(f"config.replay = '{config.replay}': a sequence replay is 'uniform' or 'prioritized'")
    for field, off in (("diagnostics", False), ("intervention", "none")):
        if getattr(config, field) != off:
            fail(
                f"config.{field} = {getattr(config, field)!r} is not available with a recurrent "
                f"core yet (it reads single observations): set {field}={off!r} or core='none'"
            )


@struct.dataclass
class Step:
    """What a sequence replay stores per env step: the one-step transition, whether its
    ``obs`` is an episode's first (the carry resets before it), and the carry before it."""

    transition: Transition
    first: jax.Array
    carry: Any


@struct.dataclass
class SequenceState:
    """A sequence source's state: its envs (with their memories) and the replay."""

    loop: EnvLoop
    buffer: sequence_replay.SequenceReplay


def sequence_step(
    prog: deep_q.Program, hp: Any, params: Params, carry: tuple
) -> tuple[tuple, None]:
    """One ε-greedy step of the envs from ``carry`` = (state, key), stored with the memory the
    network acted from."""
    state, key = carry
    memory = state.loop.memory
    key, loop, tr = act(prog, hp, params, state.loop, key)
    buffer = sequence_replay.add(state.buffer, Step(tr, memory[1], memory[0]))
    return (SequenceState(loop, buffer), key), None


def empty_sequences(prog: deep_q.Program, loop: EnvLoop) -> SequenceState:
    """An empty sequence replay of ``prog.config``'s kind for the envs ``loop``."""
    config = prog.config
    carry = jax.tree.map(lambda c: c[0], loop.memory[0])
    example = Step(replay_source.example_transition(prog, loop), jnp.bool_(True), carry)
    buffer = sequence_replay.init(
        example,
        config.buffer_size // config.num_envs,
        config.num_envs,
        config.sequence_length,
        period(config),
        prioritized=config.replay == "prioritized",
        track_min=config.per_normalise == "buffer",
    )
    return SequenceState(loop, buffer)


def sequence_batch(
    prog: deep_q.Program, hp: Any, state: SequenceState, x: dict[str, Any]
) -> tuple[recurrent.SequenceBatch, Drawn]:
    """One update's B sequences from its words ``x["plan"]`` (uniform, or prioritised with β
    annealed from ``hp.per_beta`` to 1 over the run): their n-step rows and the sequences the
    network is unrolled over; the sampled slots in :attr:`Drawn.index`."""
    config, buffer = prog.config, state.buffer
    weight = None
    if config.replay == "prioritized":
        beta = policies.linear_schedule(state.loop.env_steps, hp.per_beta, 1.0, config.total_steps)
        seq, slot, weight = sequence_replay.sample_prioritized(
            buffer, x["plan"], beta, config.per_normalise
        )
    else:
        seq, slot = sequence_replay.sample(buffer, x["plan"])
    seq = jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), seq)  # time-major [L, B, ...]
    rows = sequence_replay.n_step_rows(seq.transition, config.burn_in, config.n_step, hp.gamma)
    if weight is not None:  # row t·B + b is sequence b's
        rows = rows.replace(weight=jnp.tile(weight, config.sequence_length - config.burn_in))
    tr = seq.transition
    carry = jax.tree.map(lambda c: c[0], seq.carry)
    sequences = recurrent.Sequences(tr.obs, tr.next_obs, seq.first, carry, config.burn_in)
    return recurrent.SequenceBatch(rows, sequences), Drawn(slot)


def sequence_feedback(
    prog: deep_q.Program, hp: Any, state: SequenceState, drawn: Drawn, update: Update
) -> SequenceState:
    """Prioritised sequence replay's feedback: each sampled sequence's priority is the
    η-mixture (``hp.per_eta``) of its rows' (:func:`qlearn.sequence_replay.mixed_priority`)."""
    replay_source.check_priority(update)
    steps = prog.config.sequence_length - prog.config.burn_in
    per_step = update.priority.reshape(steps, -1)
    priority = sequence_replay.mixed_priority(per_step, hp.per_eta)
    buffer = sequence_replay.update_priorities(
        state.buffer, drawn.index, priority, hp.per_alpha, hp.per_eps
    )
    return state.replace(buffer=buffer)


def sequence_source(prog: deep_q.Program, hp: Any) -> Source:
    """R2D2's source (:func:`qlearn.algos.replay_source.stored_steps_source`): an empty
    sequence replay filled by ε-greedy env steps with their carries (:func:`sequence_step`);
    ``batch``: :func:`sequence_batch` (``batch_size`` sequences); ``feedback``: prioritised
    replay's :func:`sequence_feedback`."""
    feedback = sources.no_feedback
    if prog.config.replay == "prioritized":
        feedback = functools.partial(sequence_feedback, prog, hp)
    return replay_source.stored_steps_source(
        prog,
        functools.partial(sequence_step, prog, hp),
        functools.partial(empty_sequences, prog),
        lambda state: sequence_replay.words_per_sample(state.buffer),
        functools.partial(sequence_batch, prog, hp),
        feedback,
    )
