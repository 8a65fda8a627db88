"""Recurrent Q-networks: a memory core (GRU or LSTM) between a network's torso and its value
head, so an agent acts on its history rather than on one observation — what a partially
observable task (:func:`qlearn.envs.catalog.tmaze`) asks of it.

The recurrent contract: a network that carries state is applied one step at a time,

    apply(params, carry, obs [B, ...], reset bool [B], tau=None) -> (carry', outputs [B, A·K])

where ``reset[b]`` says ``obs[b]`` is the first of an episode: its carry is replaced by the
initial one (zeros, :func:`initial_carry`) before the step, so what a run outputs in an episode
never depends on what came before the episode began. :func:`unroll` applies it along sequences
[T, B, ...]; :func:`sequence_q_function` makes a :class:`~qlearn.networks.QFunction` of a
batch of sequences whose ``apply`` takes their T·B observations flattened, so every loss and
head works on a recurrent network unchanged. :func:`rows_q_function` does the same for replayed
sequences (:class:`SequenceBatch`): a burn-in that passes no gradient, and the values one step
ahead that n-step targets bootstrap from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from qlearn import networks
from qlearn.heads import Head
from qlearn.networks import ACTIVATIONS, QFunction, conv_layers, hidden_layers, last_layer
from qlearn.types import Transition

CORES = ("gru", "lstm")
"""The memory cores a network can have (``config.core``; 'none': a feed-forward network)."""

FIELDS: dict[str, tuple[Any, str]] = {
    "core": (
        "none",
        "the Q-network's memory between its dense layers and its head: 'none' (feed-forward), "
        "'gru' or 'lstm' (reset at each episode's start)",
    ),
    "memory_size": (128, "width of the memory core (config.core)"),
}
"""The static fields of a recurrent Q-network (name -> (default, help)), declared by a config
with :func:`qlearn.types.table_field`."""

RECURRENT_INIT = nn.initializers.lecun_normal()
"""The initialiser of the cores' recurrent kernels (those of the inputs are flax's default,
LeCun normal, too). Not flax's orthogonal default: that draws a QR decomposition per run, and
under ``vmap`` jaxlib 0.10's batched QR splits its batch over XLA:CPU's thread pool and waits
for it there — with several drawn at once (a GRU has three recurrent kernels) every worker
waited and the program never finished (gdb: each in ``ParallelBatchMap``'s
``BlockingCounter::Wait`` under ``lapack_sgeqrf_ffi``, 2 cores)."""

Memory = tuple[Any, jax.Array]
"""What an agent with a recurrent network carries between env steps: (the carry [N, ...], bool
[N]: the observation it acts on next is the first of an episode)."""


class RecurrentQNetwork(nn.Module):
    """q̂(h_t, ·) = head(y_t), (c_t, y_t) = core(c_{t−1} or c_0 at an episode's start, x_t),
    x_t = hidden layers of the torso of the observation o_t.

    Attributes:
      num_actions: A.
      core: 'gru' (flax ``GRUCell``) or 'lstm' (flax ``OptimizedLSTMCell``).
      memory_size: the core's width H.
      torso: convolutions (channels, kernel size, stride) for image observations
        (:data:`qlearn.networks.TORSOS`), () to flatten the observation.
      hidden_sizes: the dense layers between the torso and the core.
      activation: one of :data:`qlearn.networks.ACTIVATIONS` (the dense layers').
      layer_norm: LayerNorm after each convolution and dense layer.
      head: the last layer's :class:`~qlearn.heads.Head`.
      noisy: the dense layers and the head are :class:`~qlearn.noisynet.NoisyDense`.
    """

    num_actions: int
    core: str = "gru"
    memory_size: int = 128
    torso: tuple[tuple[int, int, int], ...] = ()
    hidden_sizes: Sequence[int] = (128,)
    activation: str = "relu"
    layer_norm: bool = False
    head: Head | None = None
    noisy: bool = False

    @nn.compact
    def __call__(
        self, carry: Any, obs: jax.Array, reset: jax.Array, tau: jax.Array | None = None
    ) -> tuple[Any, jax.Array]:
        x = obs.astype(jnp.float32)
        if self.torso:
            x = conv_layers(x, self.torso, self.layer_norm)
        x = x.reshape(obs.shape[0], -1)
        x = hidden_layers(
            x, self.hidden_sizes, ACTIVATIONS[self.activation], self.layer_norm, self.noisy
        )
        carry = jax.tree.map(lambda c: jnp.where(reset[:, None], jnp.zeros_like(c), c), carry)
        kind = nn.GRUCell if self.core == "gru" else nn.OptimizedLSTMCell
        cell = kind(self.memory_size, recurrent_kernel_init=RECURRENT_INIT)
        carry, y = cell(carry, x)
        return carry, last_layer(y, tau, self.num_actions, self.head, self.noisy)


def build(
    kind: str,
    num_actions: int,
    obs_shape: Sequence[int],
    *,
    core: str,
    memory_size: int,
    hidden_sizes: Sequence[int] = (128,),
    activation: str = "relu",
    layer_norm: bool = False,
    head: Head | None = None,
    noisy: bool = False,
) -> RecurrentQNetwork:
    """The recurrent Q-network a config names: the torso and dense layers of
    :func:`qlearn.networks.build`'s ``kind`` (with its checks of the observations), then the
    ``core`` of width ``memory_size``, then the head. ValueError for an unknown core, a width
    below 1 or the ``linear`` network (a table has no features to remember)."""
    if core not in CORES:
        raise ValueError(f"config.core = '{core}' must be 'none' or one of {', '.join(CORES)}")
    if memory_size < 1:
        raise ValueError(f"config.memory_size = {memory_size} must be ≥ 1")
    if kind == "linear":
        raise ValueError("config.core needs config.network = 'mlp', 'cnn' or 'nature_cnn'")
    kwargs = dict(hidden_sizes=hidden_sizes, activation=activation, layer_norm=layer_norm)
    feed_forward = networks.build(kind, num_actions, obs_shape, **kwargs, head=head, noisy=noisy)
    torso = networks.TORSOS.get(kind, ())
    return RecurrentQNetwork(
        num_actions,
        core,
        memory_size,
        torso,
        tuple(feed_forward.hidden_sizes),
        activation,
        layer_norm,
        head,
        noisy,
    )


def init_params(network: Any, key: jax.Array, obs_shape: Sequence[int]) -> Any:
    """The initial variables of ``network`` (recurrent or not) for observations of
    ``obs_shape``, from ``key``."""
    obs = jnp.zeros((1, *obs_shape))
    if not isinstance(network, RecurrentQNetwork):
        return network.init(key, obs)
    return network.init(key, initial_carry(network, 1), obs, jnp.ones((1,), bool))


def step_values(
    q_fn: QFunction,
    params: Any,
    memory: Memory,
    obs: jax.Array,
    levels: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    """One step of a recurrent ``q_fn`` on observations [B, ...] with ``memory`` (its carry,
    and which observations start an episode): (q̂ [B, A], the carry after the step) — the
    head's expected values (an ``iqn`` head's mean at ``levels`` [B, K] where given, at its
    midpoints otherwise)."""
    carry, first = memory
    carry, out = q_fn.apply(params, carry, obs, first, *(() if levels is None else (levels,)))
    size = q_fn.head.size if levels is None else levels.shape[-1]
    outputs = out.reshape(obs.shape[0], -1, size)
    return q_fn.head.expected(outputs, q_fn.support), carry


def initial_carry(network: RecurrentQNetwork, batch: int) -> Any:
    """The carry c_0 of ``batch`` sequences at an episode's start: zeros, [batch, H] for a GRU
    and a pair of them (cell, hidden) for an LSTM."""
    zeros = jnp.zeros((batch, network.memory_size), jnp.float32)
    return zeros if network.core == "gru" else (zeros, zeros)


def initial_memory(network: RecurrentQNetwork, batch: int) -> Memory:
    """The :data:`Memory` of ``batch`` envs about to start their episodes: the initial carry,
    every observation the first of an episode."""
    return initial_carry(network, batch), jnp.ones((batch,), bool)


def unroll(
    apply: Any, params: Any, carry: Any, obs: jax.Array, reset: jax.Array, *per_step: jax.Array
) -> tuple[Any, jax.Array]:
    """``apply`` (the recurrent contract) along B sequences of T steps from ``carry``:
    observations [T, B, ...], resets bool [T, B] and any further per-step inputs [T, B, ...]
    (an iqn head's levels) -> (the carry after the last step, outputs [T, B, ...])."""

    def step(c: Any, xs: tuple) -> tuple[Any, jax.Array]:
        return apply(params, c, *xs)

    return jax.lax.scan(step, carry, (obs, reset, *per_step))


def sequence_q_function(q_fn: QFunction, carry: Any, reset: jax.Array) -> QFunction:
    """``q_fn`` (of a recurrent network) over B sequences of T steps that start from ``carry``
    with resets ``reset`` [T, B]: its ``apply(params, obs [T·B, ...], *levels)`` unrolls the
    network over the observations taken time-major (row t·B + b is step t of sequence b) and
    returns the outputs in the same order, so a loss written for observations
    [batch, ...] trains the network on whole sequences unchanged."""
    steps, batch = reset.shape

    def apply(params: Any, obs: jax.Array, *per_step: jax.Array) -> jax.Array:
        def by_step(x: jax.Array) -> jax.Array:
            return x.reshape(steps, batch, *x.shape[1:])

        _, out = unroll(q_fn.apply, params, carry, by_step(obs), reset, *map(by_step, per_step))
        return out.reshape(steps * batch, *out.shape[2:])

    return dataclasses.replace(q_fn, apply=apply)


@struct.dataclass
class Sequences:
    """B replayed sequences of L steps, time-major, that a recurrent network is unrolled over
    from the carry it had at their first step."""

    obs: jax.Array
    """[L, B, ...]: the observations acted on."""
    next_obs: jax.Array
    """[L, B, ...]: the observations each step reached (at an episode's end its last one)."""
    reset: jax.Array
    """bool [L, B]: ``obs`` is the first of an episode (the carry is reset before it)."""
    carry: Any
    """[B, ...]: the carry before the first step, as it was stored while acting."""
    burn_in: int = struct.field(pytree_node=False, default=0)
    """the first steps, unrolled only to warm the carry up (no gradient passes through them)."""


@struct.dataclass
class SequenceBatch:
    """What a sequence replay gives a TD learner: the trained steps as rows of a
    :class:`~qlearn.types.Transition` whose ``obs`` and ``next_obs`` are row numbers of
    :func:`rows_q_function` of ``sequences``, so every replay loss runs on it unchanged."""

    transition: Transition
    sequences: Sequences


def rows_q_function(q_fn: QFunction, seqs: Sequences) -> QFunction:
    """``q_fn`` (of a recurrent network) over replayed sequences: its ``apply(params,
    rows int32 [R], *levels)`` gives the outputs of the rows asked for, where for the T = L −
    burn_in trained steps (t counted from the burn-in's end, b the sequence)

        row t·B + b          is q̂(h_t, ·): the network unrolled over obs from the stored carry;
        row T·B + t·B + b    is the step ahead: one step on next_obs[t] from the carry after
                             obs[t], not reset — q̂ of the state step t reached, the same as the
                             unroll's row t + 1 inside an episode, and its final observation's
                             value at a time limit (what n-step targets bootstrap from).

    The burn-in steps are unrolled first and their carry held fixed
    (``jax.lax.stop_gradient``): no gradient reaches them or the stored carry. An iqn head's
    levels [R, K] are placed at the rows asked for (the others' are discarded)."""
    burn_in = seqs.burn_in
    steps = seqs.reset.shape[0] - burn_in
    batch = seqs.reset.shape[1]
    size = steps * batch

    def apply(params: Any, rows: jax.Array, *levels: jax.Array) -> jax.Array:
        carry = seqs.carry
        if burn_in:
            carry, _ = unroll(q_fn.apply, params, carry, seqs.obs[:burn_in], seqs.reset[:burn_in])
            carry = jax.lax.stop_gradient(carry)
        step_levels, ahead_levels = (), ()
        if levels:
            placed = jnp.zeros((2 * size, levels[0].shape[-1])).at[rows].set(levels[0])
            step_levels = (placed[:size].reshape(steps, batch, -1),)
            ahead_levels = (placed[size:],)

        def step(c: Any, xs: tuple) -> tuple[Any, tuple]:
            c, out = q_fn.apply(params, c, *xs)
            return c, (out, c)

        xs = (seqs.obs[burn_in:], seqs.reset[burn_in:], *step_levels)
        _, (out, after) = jax.lax.scan(step, carry, xs)
        after = jax.tree.map(lambda c: c.reshape(size, *c.shape[2:]), after)
        next_obs = seqs.next_obs[burn_in:]
        next_obs = next_obs.reshape(size, *next_obs.shape[2:])
        _, ahead = q_fn.apply(params, after, next_obs, jnp.zeros(size, bool), *ahead_levels)
        return jnp.concatenate([out.reshape(size, *out.shape[2:]), ahead])[rows]

    return dataclasses.replace(q_fn, apply=apply)


__all__ = [
    "CORES",
    "FIELDS",
    "Memory",
    "RecurrentQNetwork",
    "SequenceBatch",
    "Sequences",
    "build",
    "init_params",
    "initial_carry",
    "initial_memory",
    "rows_q_function",
    "sequence_q_function",
    "step_values",
    "unroll",
]
