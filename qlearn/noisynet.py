"""Noisy layers (NoisyNet, Fortunato et al. 2018): factorised Gaussian noise in fully connected
layers. A noisy layer's noise ε is a variable collection ``"noise"`` that the caller samples
(:func:`sample_noise`) and passes beside the parameters (:func:`with_noise`); without it the
layer is its mean, μ. The static field and hyperparameter that turn them on and scale them
are declared here (:data:`NOISY_FIELDS`, :data:`NOISY_HPARAMS`)."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

NOISY_FIELDS: dict[str, tuple[Any, str]] = {
    "noisy": (
        False,
        "NoisyNet (Fortunato et al. 2018): factorised Gaussian noise in the fully connected "
        "layers, σ₀ = hparam noisy_sigma0; fresh noise per env step and per update (online "
        "and target apart); the greedy policy and every metric use the mean network. "
        "ε-greedy stays on (eps_start, eps_end as without noise), where Fortunato et al. use "
        "ε = 0: for exploration by noise alone set eps_start = eps_end = 0",
    ),
}
"""The static field of noisy layers (name -> (default, help)), declared by a config with
:func:`qlearn.types.table_field`."""


NOISY_HPARAMS: dict[str, dict[str, Any]] = {
    "noisy_sigma0": dict(
        default=0.5,
        low=0,
        help="noisy layers: σ = σ₀/√fan_in at initialisation (Fortunato et al.)",
    ),
}
"""The hyperparameter of noisy layers (name -> :func:`qlearn.hparams.field` keywords),
declared with :func:`qlearn.hparams.table_field`."""


def noise_scale(eps: jax.Array) -> jax.Array:
    """f(ε) = sgn(ε)·√|ε|, the map of factorised Gaussian noise (Fortunato et al. 2018)."""
    return jnp.sign(eps) * jnp.sqrt(jnp.abs(eps))


class NoisyDense(nn.Module):
    """A fully connected layer with factorised Gaussian noise (Fortunato et al. 2018, §3):

        y = (μ_W + σ_W ⊙ f(ε_in) f(ε_out)ᵀ)ᵀ x + μ_b + σ_b ⊙ f(ε_out),    f = :func:`noise_scale`,

    x [..., p] → y [..., q]. μ and σ are learned parameters (``kernel``, ``bias``,
    ``sigma_kernel`` [p, q], ``sigma_bias`` [q]), initialised μ ~ U[−1/√p, 1/√p] and
    σ = σ₀/√p with σ₀ = 1 (the caller scales the σ's to its σ₀: :func:`scale_noise`). The
    noise ε_in [p], ε_out [q] is the variable collection ``"noise"``; a call without it (the
    greedy policy, evaluation, every metric) uses ε = 0, the layer's mean μ.

    Attributes:
      features: q.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = x.shape[-1]
        bound = 1.0 / math.sqrt(p)
        uniform = nn.initializers.uniform(2 * bound)
        kernel = self.param("kernel", lambda k, s: uniform(k, s) - bound, (p, self.features))
        bias = self.param("bias", lambda k, s: uniform(k, s) - bound, (self.features,))
        sigma_init = nn.initializers.constant(bound)
        sigma_kernel = self.param("sigma_kernel", sigma_init, (p, self.features))
        sigma_bias = self.param("sigma_bias", sigma_init, (self.features,))
        if not (self.is_initializing() or self.has_variable("noise", "eps_in")):
            return x @ kernel + bias
        eps_in = self.variable("noise", "eps_in", jnp.zeros, (p,)).value
        eps_out = self.variable("noise", "eps_out", jnp.zeros, (self.features,)).value
        f_in, f_out = noise_scale(eps_in), noise_scale(eps_out)
        weight = kernel + sigma_kernel * (f_in[:, None] * f_out[None, :])
        return x @ weight + bias + sigma_bias * f_out


def dense(features: int, noisy: bool) -> nn.Module:
    """A fully connected layer of ``features`` outputs: :class:`NoisyDense` or ``nn.Dense``."""
    return NoisyDense(features) if noisy else nn.Dense(features)


NOISE_SCALES = ("sigma_kernel", "sigma_bias")
"""The names of a :class:`NoisyDense` layer's σ parameters."""


def split_variables(variables: Any) -> tuple[Any, Any]:
    """An initialised network's variables → (params ``{"params": ...}``, the zero noise
    collection of its noisy layers, or None without any)."""
    params = {k: v for k, v in variables.items() if k != "noise"}
    return params, variables.get("noise")


def sample_noise(template: Any, key: jax.Array, batch: tuple[int, ...] = ()) -> Any:
    """Fresh standard-normal noise for every leaf of the noise collection ``template`` (its
    arrays or shape structs), with leading axes ``batch`` (one sample per index)."""
    leaves, treedef = jax.tree.flatten(template)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, (*batch, *leaf.shape)) for k, leaf in zip(keys, leaves, strict=True)]
    )


def with_noise(params: Any, noise: Any) -> Any:
    """The variables a noisy network applies with: ``params`` and the collection ``noise``
    (``params`` itself when ``noise`` is None: the mean network)."""
    return params if noise is None else {**params, "noise": noise}


def scale_noise(params: Any, sigma0: Any) -> Any:
    """``params`` with every noisy layer's σ (``sigma_kernel``, ``sigma_bias``) multiplied by
    σ₀, so that σ = σ₀/√p at initialisation (``sigma0`` may be a traced hyperparameter)."""

    def scale(path: tuple, leaf: jax.Array) -> jax.Array:
        name = getattr(path[-1], "key", None)
        return leaf * sigma0 if name in NOISE_SCALES else leaf

    return jax.tree_util.tree_map_with_path(scale, params)


def mean_noise_scale(params: Any) -> jax.Array:
    """The mean |σ| over every entry of the noisy layers' ``sigma_kernel`` and ``sigma_bias``
    (how much noise the network has kept; NaN without noisy layers)."""
    sigmas = [
        leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
        if getattr(path[-1], "key", None) in NOISE_SCALES
    ]
    if not sigmas:
        return jnp.full((), jnp.nan)
    total = sum(jnp.sum(jnp.abs(s)) for s in sigmas)
    return total / sum(s.size for s in sigmas)
