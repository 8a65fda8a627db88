"""Interventions on a Q-network's parameters that restore plasticity, as pure functions of the
parameters, their optimiser state and fresh parameters: ReDo's recycling of dormant units
(Sokar et al. 2023), resets of the last layers (Nikishin et al. 2022) and shrink-and-perturb
(Ash & Adams 2020). The learner applies them every ``intervention_period`` updates
(:func:`qlearn.algos.learners.with_intervention`).

A network's layers, in the order it applies them (:func:`layer_names`): its convolutions
(``Conv2D_i``), then its dense layers (``Dense_i``); hidden layer i is followed by the
activation whose units ReDo scores (:func:`qlearn.diagnostics.captured_activations`) and read
by layer i + 1 (the output layer after the last). ``LayerNorm_i`` belongs to hidden layer i.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import optax

from qlearn import diagnostics

INTERVENTIONS = ("none", "redo", "reset", "shrink_perturb")
"""``config.intervention``: none; ReDo; a reset of the last ``reset_layers`` layers; shrink-and-
perturb of every parameter."""


def layer_names(params: Any) -> list[str]:
    """The convolution and dense layers of a flax variables dict, in the order the network
    applies them: ``Conv2D_0``, …, ``Dense_0``, … (:func:`qlearn.diagnostics.layer_groups`)."""
    names = list(diagnostics.layer_groups(params))
    return [n for n in names if n.startswith("Conv2D_")] + [
        n for n in names if n.startswith("Dense_")
    ]


def norm_of(layer: str, params: Any) -> str | None:
    """The LayerNorm that normalises hidden layer ``layer``'s outputs (its index among the
    hidden layers), or None."""
    index = layer_names(params).index(layer)
    name = f"LayerNorm_{index}"
    return name if name in diagnostics.layer_groups(params) else None


def check_recyclable(params: Any, num_activations: int, intervention: str = "redo") -> None:
    """Raise ValueError unless the network is a chain of layers that ReDo can recycle and a
    reset can count from the end: as many hidden layers as activations, and one output layer
    after them (not a dueling, noisy or IQN head, whose layers are not one chain)."""
    layers = layer_names(params)
    groups = diagnostics.layer_groups(params)
    extra = [n for n in groups if not re.fullmatch(r"(Conv2D|Dense|LayerNorm)_\d+", n)]
    if extra or len(layers) != num_activations + 1:
        raise ValueError(
            f"config.intervention = '{intervention}' needs a chain of hidden layers and one "
            "output layer "
            f"(mlp, cnn or nature_cnn without dueling, noisy or iqn heads); this network has "
            f"layers {list(groups)}"
        )


def _units_mask(kernel: jax.Array, units: jax.Array, axis: str) -> jax.Array:
    """A bool mask of ``kernel``'s shape: the entries of the input (``axis="in"``) or output
    (``"out"``) units ``units`` [U] (a dense kernel [I, O], a convolution's [kh, kw, I, O]; a
    dense layer reading a flattened convolution of U channels repeats the mask over
    positions)."""
    if axis == "out":
        return jnp.broadcast_to(units, kernel.shape)
    rows = kernel.shape[-2]
    per_row = jnp.tile(units, rows // units.shape[0])  # flattened [h, w, C]: channel fastest
    shape = (1,) * (kernel.ndim - 2) + (rows, 1)
    return jnp.broadcast_to(per_row.reshape(shape), kernel.shape)


def redo_masks(params: Any, dormant: tuple[jax.Array, ...]) -> tuple[Any, Any]:
    """(re-initialise, zero): params-shaped bool trees for ReDo on the dormant units
    ``dormant`` (one bool [units] per hidden layer): each dormant unit's incoming weights and
    bias (and its LayerNorm scale and offset) are re-initialised, its outgoing weights (the
    next layer's rows that read it) zeroed."""
    tree = params["params"]
    layers = layer_names(params)
    fresh = jax.tree.map(lambda x: jnp.zeros(x.shape, bool), tree)
    zero = jax.tree.map(lambda x: jnp.zeros(x.shape, bool), tree)
    for i, units in enumerate(dormant):
        layer, reader = layers[i], layers[i + 1]
        fresh[layer]["kernel"] = _units_mask(tree[layer]["kernel"], units, "out")
        fresh[layer]["bias"] = units
        norm = norm_of(layer, params)
        if norm is not None:
            fresh[norm] = {k: units for k in tree[norm]}
        zero[reader]["kernel"] = zero[reader]["kernel"] | _units_mask(
            tree[reader]["kernel"], units, "in"
        )
    return {"params": fresh}, {"params": zero}


def apply_masks(params: Any, new: Any, fresh: Any, zero: Any) -> Any:
    """θ with the ``fresh`` entries taken from ``new`` and the ``zero`` entries set to 0."""
    return jax.tree.map(
        lambda p, n, f, z: jnp.where(f, n, jnp.where(z, jnp.zeros_like(p), p)),
        params,
        new,
        fresh,
        zero,
    )


def reset_moments(opt_state: Any, changed: Any) -> Any:
    """Adam's moments set to 0 at the entries ``changed`` (a params-shaped bool tree), the rest
    of the optimiser state as it is: a recycled or reset weight starts its statistics anew."""

    def reset(state: Any) -> Any:
        if isinstance(state, optax.ScaleByAdamState):
            zero = lambda m, c: jnp.where(c, jnp.zeros_like(m), m)
            return state._replace(
                mu=jax.tree.map(zero, state.mu, changed), nu=jax.tree.map(zero, state.nu, changed)
            )
        return state

    return jax.tree.map(reset, opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))


def redo(
    params: Any,
    opt_state: Any,
    fresh_params: Any,
    activations: tuple[jax.Array, ...],
    tau: jax.Array | float,
) -> tuple[Any, Any]:
    """ReDo (Sokar et al. 2023): the τ-dormant units of each hidden layer (on the batch whose
    ``activations`` are given, :func:`qlearn.diagnostics.unit_scores`) get their incoming
    weights from ``fresh_params`` (a new initialisation) and their outgoing weights zeroed,
    so the network's function is unchanged where it does not pass through them; Adam's
    moments of every changed weight restart. Returns (params, opt_state)."""
    dormant = tuple(diagnostics.unit_scores(h) <= tau for h in activations)
    fresh, zero = redo_masks(params, dormant)
    changed = jax.tree.map(jnp.logical_or, fresh, zero)
    return apply_masks(params, fresh_params, fresh, zero), reset_moments(opt_state, changed)


def reset_last(params: Any, opt_state: Any, fresh_params: Any, count: int) -> tuple[Any, Any]:
    """The last ``count`` layers (:func:`layer_names`, with their LayerNorms) re-initialised
    from ``fresh_params`` and their Adam moments restarted (Nikishin et al. 2022's resets, the
    replay kept). Returns (params, opt_state)."""
    layers = layer_names(params)
    chosen = set(layers[-count:])
    chosen |= {norm_of(n, params) for n in chosen if n != layers[-1]} - {None}
    mask = {
        "params": {
            name: jax.tree.map(lambda x, c=name in chosen: jnp.full(x.shape, c), group)
            for name, group in params["params"].items()
        }
    }
    reset = jax.tree.map(lambda p, n, m: jnp.where(m, n, p), params, fresh_params, mask)
    return reset, reset_moments(opt_state, mask)


def shrink_perturb(params: Any, fresh_params: Any, shrink: jax.Array, perturb: jax.Array) -> Any:
    """Shrink-and-perturb (Ash & Adams 2020): θ ← λ·θ + σ·θ_fresh, θ_fresh a new
    initialisation, λ = ``shrink``, σ = ``perturb``."""
    return jax.tree.map(lambda p, n: shrink * p + perturb * n, params, fresh_params)
