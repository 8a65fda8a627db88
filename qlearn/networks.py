"""Q-networks (flax linen) and their value heads.

Each network maps a batch of observations [B, *obs_shape] to [B, num_outputs]. The MLP and
linear networks flatten observations (vector and image both work); the MinAtar CNN takes
images [B, H, W, C] (channels last, as gymnax's MinAtar gives).

A value **head** (:class:`Head`) says what the A·K outputs mean per action: one value
(``scalar``, K = 1), the logits of a categorical distribution over K fixed atoms
(``categorical``, C51), the logits of K bins of equal width over [v_min, v_max] whose centres
are the values (``histogram``, for classification losses: HL-Gauss, two-hot) or K quantile
values (``quantile``, QR-DQN), or the values at K quantile levels τ given as an input and
embedded by cosines (``iqn``, Dabney et al. 2018b). With ``noisy`` the fully connected layers
are :class:`NoisyDense` (NoisyNet, Fortunato et al. 2018): their noise ε is a variable
collection ``"noise"`` that the caller samples (:func:`sample_noise`) and passes beside the
parameters (:func:`with_noise`); without it a noisy layer is its mean, μ. :class:`QFunction` wraps a
network with its head: calling it gives the action values q̂(s, ·) [B, A] (the head's expected
value), so ε-greedy, evaluation and every metric work with any head, and
:meth:`QFunction.outputs` gives the head's raw outputs [B, A, K] to a distributional loss.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "swish": nn.swish, "gelu": nn.gelu}


# -- value heads --------------------------------------------------------------------------

HEADS = ("scalar", "categorical", "histogram", "quantile", "iqn")
IQN_COSINES = 64
"""n of the IQN embedding φ(τ) = ReLU(W [cos(π i τ)]_{i<n} + b) (Dabney et al.: 64)."""


@dataclasses.dataclass(frozen=True)
class Head:
    """What a Q-network outputs per action: ``kind`` (one of :data:`HEADS`), ``size`` K, the
    outputs per action (1 for ``scalar``; atoms, bins or quantiles otherwise), and whether the
    last layer is ``dueling`` (Wang et al. 2016; per atom or quantile for K > 1, as Rainbow)."""

    kind: str = "scalar"
    size: int = 1
    dueling: bool = False


SCALAR = Head()
"""The head of one value per action."""


# -- noisy layers (NoisyNet) --------------------------------------------------------------


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


def output_layer(
    x: jax.Array, num_actions: int, head: Head | None, noisy: bool = False
) -> jax.Array:
    """The last layer on features x [B, F]: [B, A·K] (A = ``num_actions``, K = ``head.size``).

    Plain: one Dense (:class:`NoisyDense` with ``noisy``). Dueling: a value stream V [B, K]
    and an advantage stream [B, A, K], combined as V + (adv − mean_a adv), so the value of the
    state and the advantages of the actions are learned apart (identifiable: the advantages
    average to 0)."""
    head = SCALAR if head is None else head
    if not head.dueling:
        return dense(num_actions * head.size, noisy)(x)
    value = dense(head.size, noisy)(x)[:, None, :]
    adv = dense(num_actions * head.size, noisy)(x).reshape(x.shape[0], num_actions, head.size)
    return (value + adv - jnp.mean(adv, axis=1, keepdims=True)).reshape(x.shape[0], -1)


def quantile_embedding_layer(
    x: jax.Array, tau: jax.Array, num_actions: int, head: Head, noisy: bool = False
) -> jax.Array:
    """IQN's last layers (Dabney et al. 2018b): features x [B, F] and quantile levels τ [B, T]
    give Z_τ(s, a) = f(x ⊙ φ(τ))_a, φ(τ) = ReLU(W [cos(π i τ)]_{i<64} + b) [F], f the
    :func:`output_layer` of one value per action (dueling with ``head.dueling``, noisy with
    ``noisy``; the embedding φ is never noisy): [B, A·T], ordered (action, τ) like every
    head's outputs."""
    batch, features = x.shape
    i = jnp.arange(IQN_COSINES, dtype=jnp.float32)
    phi = nn.relu(nn.Dense(features)(jnp.cos(jnp.pi * i * tau[..., None])))  # [B, T, F]
    joint = (x[:, None, :] * phi).reshape(-1, features)  # [B·T, F]
    values = output_layer(joint, num_actions, Head("scalar", 1, head.dueling), noisy)
    return values.reshape(batch, -1, num_actions).transpose(0, 2, 1).reshape(batch, -1)


def last_layer(
    x: jax.Array, tau: jax.Array | None, num_actions: int, head: Head | None, noisy: bool
) -> jax.Array:
    """:func:`quantile_embedding_layer` for an ``iqn`` head (at ``tau`` [B, T], by default
    the ``head.size`` midpoints τ̂), else :func:`output_layer`."""
    if head is not None and head.kind == "iqn":
        if tau is None:
            tau = jnp.broadcast_to(quantile_midpoints(head.size), (x.shape[0], head.size))
        return quantile_embedding_layer(x, tau, num_actions, head, noisy)
    return output_layer(x, num_actions, head, noisy)


class MLPQNetwork(nn.Module):
    """q̂(s, ·) = W_out h_L + b_out,  h_l = act(LayerNorm?(W_l h_{l-1} + b_l)),  h_0 = flat(s).

    Attributes:
      num_actions: A, the output width.
      hidden_sizes: widths of the hidden layers; ``()`` gives a linear function of the
        observation (with bias).
      activation: one of ``ACTIVATIONS``.
      layer_norm: LayerNorm after each hidden Dense (as in PQN).
      head: what the last layer outputs per action (:class:`Head`; K = ``head.size``
        outputs per action, a dueling last layer with ``head.dueling``).
      noisy: every Dense a :class:`NoisyDense`.
    """

    num_actions: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    layer_norm: bool = False
    head: Head | None = None
    noisy: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, tau: jax.Array | None = None) -> jax.Array:
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = dense(width, self.noisy)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return last_layer(x, tau, self.num_actions, self.head, self.noisy)


class LinearQNetwork(nn.Module):
    """q̂(s, a) = φ(s)ᵀ w_a with no bias: tabular when φ(s) is one-hot.

    Attributes:
      num_actions: A.
    """

    num_actions: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        return nn.Dense(self.num_actions, use_bias=False, kernel_init=nn.initializers.zeros)(x)


class Conv2D(nn.Module):
    """A stride-1 'VALID' 2-D convolution computed as one matrix product over image patches:

        y[b, i, j, o] = Σ_{di, dj, c} x[b, i + di, j + dj, c] · kernel[di, dj, c, o] + bias[o],

    x [B, H, W, C] → y [B, H − kh + 1, W − kw + 1, features]. The same maths and parameters
    (kernel [kh, kw, C, features], bias [features]) as ``flax.linen.Conv(padding='VALID')``;
    written as patches @ kernel because XLA:CPU runs a convolution inside ``lax.scan`` ≈ 4×
    slower than the equal matrix product (a MinAtar PQN update: 15 ms vs 3 ms per minibatch of
    128 on 2 cores), and the training loops are scans. On GPU it is one batched matmul too.

    Attributes:
      features: output channels.
      kernel_size: (kh, kw).
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        channels = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (kh, kw, channels, self.features)
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        h, w = x.shape[-3] - kh + 1, x.shape[-2] - kw + 1
        patches = jnp.concatenate(
            [x[..., i : i + h, j : j + w, :] for i in range(kh) for j in range(kw)], axis=-1
        )  # [B, h, w, kh·kw·C], ordered (di, dj, c) like the kernel's leading axes
        return patches @ kernel.reshape(kh * kw * channels, self.features) + bias


class MinAtarQNetwork(nn.Module):
    """The MinAtar Q-network of Young & Tian (2019): one 3×3 convolution with 16 channels
    (stride 1, no padding), a dense layer of ``hidden`` units, then the action values; ReLU
    after each, LayerNorm before each ReLU if asked (as PQN uses it).

    Attributes:
      num_actions: A.
      hidden: width of the dense layer (128 in the paper).
      layer_norm: LayerNorm after the convolution and the dense layer.
      head: the last layer's :class:`Head` (as for :class:`MLPQNetwork`).
      noisy: the dense layers are :class:`NoisyDense` (the convolution is not).
    """

    num_actions: int
    hidden: int = 128
    layer_norm: bool = False
    head: Head | None = None
    noisy: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, tau: jax.Array | None = None) -> jax.Array:
        x = Conv2D(16, (3, 3))(obs.astype(jnp.float32))
        if self.layer_norm:
            x = nn.LayerNorm()(x)
        x = nn.relu(x).reshape(obs.shape[0], -1)
        x = dense(self.hidden, self.noisy)(x)
        if self.layer_norm:
            x = nn.LayerNorm()(x)
        return last_layer(nn.relu(x), tau, self.num_actions, self.head, self.noisy)


KINDS = ("mlp", "linear", "cnn")


def build(
    kind: str,
    num_actions: int,
    obs_shape: Sequence[int],
    *,
    hidden_sizes: Sequence[int] = (128,),
    activation: str = "relu",
    layer_norm: bool = False,
    head: Head = SCALAR,
    noisy: bool = False,
) -> nn.Module:
    """The Q-network a config names: ``"mlp"``, ``"linear"`` (no bias) or ``"cnn"`` (MinAtar;
    its dense width is ``hidden_sizes[0]``), with A·K outputs for ``head`` (K = ``head.size``),
    its fully connected layers :class:`NoisyDense` with ``noisy``. Raises ValueError for a CNN
    on non-image observations, a dueling or noisy linear network or an unknown kind."""
    if kind == "mlp":
        return MLPQNetwork(num_actions, tuple(hidden_sizes), activation, layer_norm, head, noisy)
    if kind == "linear":
        for name, on in (("dueling", head.dueling), ("noisy", noisy)):
            if on:
                raise ValueError(
                    f"config.{name} needs config.network = 'mlp' or 'cnn', not 'linear'"
                )
        if head.kind == "iqn":
            raise ValueError(
                "config.head = 'iqn' needs config.network = 'mlp' or 'cnn' (features to embed "
                "τ into), not 'linear'"
            )
        return LinearQNetwork(num_actions * head.size)
    if kind == "cnn":
        if len(obs_shape) != 3:
            raise ValueError(
                f"config.network = 'cnn' needs image observations [H, W, C]; this env's are "
                f"{tuple(obs_shape)}"
            )
        width = (tuple(hidden_sizes) or (128,))[0]
        return MinAtarQNetwork(num_actions, width, layer_norm, head, noisy)
    raise ValueError(f"config.network = '{kind}' must be one of {', '.join(KINDS)}")


# -- value functions of heads ---------------------------------------------------------------


def categorical_support(v_min: Any, v_max: Any, num_atoms: int) -> jax.Array:
    """The atoms z_k = v_min + k (v_max − v_min) / (K − 1), k = 0..K−1, [K] (C51's fixed
    support; ``v_min``/``v_max`` may be traced hyperparameters)."""
    return v_min + (v_max - v_min) * jnp.arange(num_atoms, dtype=jnp.float32) / (num_atoms - 1)


def histogram_centres(v_min: Any, v_max: Any, num_bins: int) -> jax.Array:
    """The centres c_k = v_min + (k + ½)(v_max − v_min) / K of K equal bins over
    [v_min, v_max], [K] (a histogram head's values)."""
    width = (v_max - v_min) / num_bins
    return v_min + width * (jnp.arange(num_bins, dtype=jnp.float32) + 0.5)


def quantile_midpoints(num_quantiles: int) -> jax.Array:
    """τ̂_i = (2i + 1) / (2N), i = 0..N−1, [N]: the quantile levels a quantile head's outputs
    estimate (Dabney et al. 2018)."""
    return (2 * jnp.arange(num_quantiles, dtype=jnp.float32) + 1) / (2 * num_quantiles)


@dataclasses.dataclass(frozen=True)
class QFunction:
    """A Q-network with its value head, callable as a :data:`~qlearn.types.QFn`.

    Attributes:
      apply: the network's ``apply(params, obs[B, ...]) -> [B, A·K]``.
      head: its :class:`Head`.
      support: the atoms z [K] of a categorical head, the bin centres of a histogram head
        (None otherwise).
    """

    apply: Callable[..., jax.Array]
    head: Head = SCALAR
    support: jax.Array | None = None

    def outputs(self, params: Any, obs: jax.Array, tau: jax.Array | None = None) -> jax.Array:
        """The head's raw outputs [B, A, K]: logits (categorical), quantile values (quantile)
        or the values themselves (scalar, K = 1). An ``iqn`` head gives the values at the
        levels ``tau`` [B, T] (K = T), by default at the K = ``head.size`` midpoints τ̂."""
        if self.head.kind != "iqn":
            out = self.apply(params, obs)
            return out.reshape(out.shape[0], -1, self.head.size)
        if tau is None:
            tau = jnp.broadcast_to(
                quantile_midpoints(self.head.size), (obs.shape[0], self.head.size)
            )
        out = self.apply(params, obs, tau)
        return out.reshape(out.shape[0], -1, tau.shape[-1])

    def __call__(self, params: Any, obs: jax.Array) -> jax.Array:
        """q̂(s, ·) [B, A]: the expected value under the head's distribution — Σ_k softmax(ℓ)_k
        z_k (categorical, histogram), the mean of the quantiles (quantile), the output itself
        (scalar); for ``iqn`` the mean at the midpoints τ̂ (a deterministic quadrature of
        ∫ Z_τ dτ, where Dabney et al. average sampled τ)."""
        if self.head.kind == "scalar":
            return self.apply(params, obs)
        out = self.outputs(params, obs)
        if self.head.kind in ("categorical", "histogram"):
            return jax.nn.softmax(out, axis=-1) @ self.support
        return jnp.mean(out, axis=-1)
