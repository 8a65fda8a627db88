"""Learning-dynamics diagnostics of a Q-network: dormant units, feature rank, norms, policy
churn and over-estimation — pure functions of arrays, so a probe computes them inside the
compiled training program, per run of a vmapped sweep (:func:`qlearn.algos.probes.
diagnostics_probe`; the docs page "Diagnostics" defines each with its reference).

Shapes: a probe batch of B states; a layer's activations h [B, ..., units] (the units on the
last axis: a dense layer's width, a convolution's channels, averaged over its positions);
features Φ [B, F], the penultimate layer (what the last layer reads).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from qlearn import policies

HEADLINE = (
    "dormant",
    "dormant_zero",
    "srank",
    "erank",
    "param_norm",
    "grad_norm",
    "update_ratio",
    "churn_update",
    "churn_target",
    "overestimation",
    "overest_star",
    "overest_star_visited",
    "overest_star_unvisited",
    "overest_pi",
    "overest_pi_visited",
    "overest_pi_unvisited",
)
"""The run-level diagnostics (the per-layer ones, ``dormant_layer{i}`` and ``*_{layer}``, are
in ``metrics.npz`` only): what a run's summary and ``qlearn compare`` report of a run's last
evaluation."""


def final_values(metrics: dict[str, Any]) -> dict[str, Any]:
    """The :data:`HEADLINE` diagnostics a run's metrics hold (name -> [..., time]), at their
    last evaluation (name -> [...]); {} for a run without diagnostics."""
    return {name: metrics[name][..., -1] for name in HEADLINE if name in metrics}


DORMANCY_EPS = 1e-9
"""Added to a layer's mean activity before dividing by it (a layer with no activity at all
has every unit dormant, at any τ ≥ 0)."""


def unit_scores(h: jax.Array) -> jax.Array:
    """Sokar et al. (2023)'s score of each unit i of a layer, s_i = E|h_i| / ((1/H) Σ_k E|h_k|),
    the expectations over the batch (and a convolution's positions): h [B, ..., H] -> [H]."""
    activity = jnp.mean(jnp.abs(h).reshape(-1, h.shape[-1]), axis=0)
    return activity / (jnp.mean(activity) + DORMANCY_EPS)


def dormant_fractions(
    activations: tuple[jax.Array, ...], tau: jax.Array | float
) -> tuple[jax.Array, jax.Array]:
    """The τ-dormant units (s_i ≤ τ, :func:`unit_scores`) of each layer: (fraction per layer
    [L], fraction of all units of all layers []). τ = 0 counts the units that are exactly 0 on
    every probe state (dead ReLUs). NaN for a network without hidden layers (L = 0)."""
    if not activations:
        return jnp.zeros((0,)), jnp.float32(jnp.nan)
    dormant = [unit_scores(h) <= tau for h in activations]
    per_layer = jnp.stack([jnp.mean(d.astype(jnp.float32)) for d in dormant])
    total = sum(jnp.sum(d) for d in dormant) / sum(d.size for d in dormant)
    return per_layer, total.astype(jnp.float32)


def singular_values(features: jax.Array) -> jax.Array:
    """σ_1 ≥ … ≥ σ_min(B, F) of the feature matrix Φ [B, F]."""
    return jnp.linalg.svd(features.astype(jnp.float32), compute_uv=False)


def srank(features: jax.Array, delta: jax.Array | float = 0.01) -> jax.Array:
    """srank_δ(Φ) = min{k : Σ_{i≤k} σ_i / Σ_i σ_i ≥ 1 − δ} (Kumar et al. 2021), the number of
    singular values of Φ [B, F] that carry all but a fraction δ of their sum; int32 []. 0 for
    Φ = 0."""
    return ranks_of(singular_values(features), delta)[0]


def effective_rank(features: jax.Array) -> jax.Array:
    """The effective rank of Φ [B, F] (Roy & Vetterli 2007): exp(−Σ_i p_i log p_i), p_i =
    σ_i / Σ_k σ_k; between 1 and min(B, F) (1 for Φ = 0)."""
    return ranks_of(singular_values(features), 0.5)[1]


def ranks_of(sigma: jax.Array, delta: jax.Array | float) -> tuple[jax.Array, jax.Array]:
    """(:func:`srank`, :func:`effective_rank`) from the singular values σ (descending) of one
    decomposition."""
    total = jnp.sum(sigma)
    cumulative = jnp.cumsum(sigma) / jnp.maximum(total, 1e-30)
    count = jnp.minimum(jnp.sum(cumulative < 1.0 - delta) + 1, sigma.size)  # float rounding
    p = sigma / jnp.maximum(total, 1e-30)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.where(total > 0, count, 0).astype(jnp.int32), jnp.exp(entropy)


def layer_groups(params: Any) -> dict[str, Any]:
    """The parameters by layer: the top-level modules of a flax variables dict's ``params``
    (``Dense_0``, ``Conv2D_0``, ``LayerNorm_0``, …), in the order the network applies them
    (by kind, then index)."""
    tree = params["params"] if isinstance(params, dict) and "params" in params else params

    def order(name: str) -> tuple[str, int]:
        match = re.fullmatch(r"(.*?)_(\d+)", name)
        return (match.group(1), int(match.group(2))) if match else (name, -1)

    return {name: tree[name] for name in sorted(tree, key=order)}


def group_norms(tree: Any) -> dict[str, jax.Array]:
    """The global ℓ2 norm of each layer group of ``tree`` (:func:`layer_groups`) and of all of
    it (``"all"``): {name: []}."""
    groups = layer_groups(tree)
    return {name: optax.tree.norm(g) for name, g in groups.items()} | {
        "all": optax.tree.norm(groups)
    }


def update_ratios(before: Any, after: Any) -> dict[str, jax.Array]:
    """‖θ' − θ‖ / ‖θ‖ of each layer group and of all parameters: the relative size of one
    update (the effective learning rate)."""
    delta = group_norms(jax.tree.map(jnp.subtract, after, before))
    norm = group_norms(before)
    return {name: delta[name] / jnp.maximum(norm[name], 1e-30) for name in norm}


def churn(q_before: jax.Array, q_after: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Policy churn (Schaul et al. 2022): the fraction of states whose greedy action differs
    between two action-value arrays [B, A] (over the available actions ``mask`` [B, A])."""
    before = jnp.argmax(policies.masked(q_before, mask), axis=-1)
    after = jnp.argmax(policies.masked(q_after, mask), axis=-1)
    return jnp.mean((before != after).astype(jnp.float32))


def captured_activations(
    apply: Callable[..., jax.Array], params: Any, obs: jax.Array
) -> tuple[jax.Array, ...]:
    """The post-activation outputs of each hidden layer of a qlearn network on ``obs`` [B, ...],
    in the order they are applied (what :class:`qlearn.networks.Activation` sows into the
    ``intermediates`` collection): a tuple of [B, ..., units]; empty for a network without
    hidden layers (``linear``)."""
    _, state = apply(params, obs, mutable=["intermediates"])
    found = state.get("intermediates", {})

    def index(name: str) -> int:
        return int(name.rsplit("_", 1)[1])

    return tuple(found[name]["features"][0] for name in sorted(found, key=index))


def features_of(activations: tuple[jax.Array, ...], obs: jax.Array) -> jax.Array:
    """The penultimate features Φ [B, F]: the last hidden layer's activations, flattened (the
    flattened observations for a network without hidden layers)."""
    last = activations[-1] if activations else obs
    return last.reshape(last.shape[0], -1).astype(jnp.float32)


__all__ = [
    "HEADLINE",
    "captured_activations",
    "churn",
    "dormant_fractions",
    "effective_rank",
    "features_of",
    "final_values",
    "group_norms",
    "layer_groups",
    "ranks_of",
    "singular_values",
    "srank",
    "unit_scores",
    "update_ratios",
]
