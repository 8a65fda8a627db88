"""Q-networks (flax linen) and their value heads.

Each network maps a batch of observations [B, *obs_shape] to [B, num_outputs]. The MLP and
linear networks flatten observations (vector and image both work); the convolutional networks
(:class:`ConvQNetwork`: the MinAtar CNN, the Nature DQN CNN) take images [B, H, W, C] (channels
last, as gymnax's MinAtar and the suites' pixel observations give).

A value **head** (:class:`qlearn.heads.Head`) says what the A·K outputs mean per action: one value
(``scalar``, K = 1), the logits of a categorical distribution over K fixed atoms
(``categorical``, C51), the logits of K bins of equal width over [v_min, v_max] whose centres
are the values (``histogram``, for classification losses: HL-Gauss, two-hot) or K quantile
values (``quantile``, QR-DQN), or the values at K quantile levels τ given as an input and
embedded by cosines (``iqn``, Dabney et al. 2018b). With ``noisy`` the fully connected layers
are :class:`qlearn.noisynet.NoisyDense` (NoisyNet, Fortunato et al. 2018; the noise and its
sampling are in :mod:`qlearn.noisynet`). :class:`QFunction` wraps a
network with its head: calling it gives the action values q̂(s, ·) [B, A] (the head's expected
value), so ε-greedy, evaluation and every metric work with any head, and
:meth:`QFunction.outputs` gives the head's raw outputs [B, A, K] to a distributional loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from qlearn.heads import SCALAR, Head, Scalar, quantile_midpoints
from qlearn.noisynet import dense

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "swish": nn.swish, "gelu": nn.gelu}


IQN_COSINES = 64
"""n of the IQN embedding φ(τ) = ReLU(W [cos(π i τ)]_{i<n} + b) (Dabney et al.: 64)."""


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
    x: jax.Array,
    tau: jax.Array | None,
    num_actions: int,
    head: Head,
    noisy: bool = False,
    mean_levels: bool = False,
) -> jax.Array:
    """IQN's last layers (Dabney et al. 2018b): features x [B, F] and quantile levels τ give
    Z_τ(s, a) = f(x ⊙ φ(τ))_a, φ(τ) = ReLU(W [cos(π i τ)]_{i<64} + b) [F], f the
    :func:`output_layer` of one value per action (dueling with ``head.dueling``, noisy with
    ``noisy``; the embedding φ is never noisy): [B, A·T], ordered (action, τ) like every
    head's outputs.

    ``tau``: [B, T], each sample's own levels; [T], one set shared by the batch, whose
    embedding runs on T rows and whose products x ⊙ φ are never formed
    (:func:`factored_output`, B·T·F numbers fewer to write and read back); None, the
    ``head.size`` midpoints τ̂, given to every sample as its own levels (as they always were:
    embedding them once would be cheaper, and moves IQN's q̂ metrics in their last bits).

    ``mean_levels`` (with shared ``tau`` [T] only): the mean over the T levels instead, [B, A]:
    as f is affine, (1/T) Σ_t f(x ⊙ φ(τ_t)) = f(x ⊙ φ̄), φ̄ = (1/T) Σ_t φ(τ_t), so the last layer
    runs on B rows, not B·T (equal to the mean of the outputs up to rounding)."""
    batch, features = x.shape
    shared = tau is not None and tau.ndim == 1
    if mean_levels and not shared:
        raise ValueError("mean_levels needs levels tau [T] shared by the batch")
    if tau is None:
        tau = jnp.broadcast_to(quantile_midpoints(head.size), (batch, head.size))
    i = jnp.arange(IQN_COSINES, dtype=jnp.float32)
    phi = nn.relu(nn.Dense(features)(jnp.cos(jnp.pi * i * tau[..., None])))  # [(B,) T, F]
    if mean_levels:
        return output_layer(x * jnp.mean(phi, axis=0), num_actions, Scalar(1, head.dueling), noisy)
    if shared and not noisy:
        values = factored_output(x, phi, num_actions, head.dueling)  # [B, T, A]
        return values.transpose(0, 2, 1).reshape(batch, -1)
    joint = (x[:, None, :] * phi).reshape(-1, features)  # [B·T, F]
    values = output_layer(joint, num_actions, Scalar(1, head.dueling), noisy)
    return values.reshape(batch, -1, num_actions).transpose(0, 2, 1).reshape(batch, -1)


def factored_dense(n: int, x: jax.Array, phi: jax.Array) -> jax.Array:
    """A Dense layer of ``n`` outputs (the parameters an ``nn.Dense(n)`` in this place has)
    applied to every product x_b ⊙ φ_t of features x [B, F] and embeddings φ [T, F], as
    Σ_f (x_bf W_fn) φ_tf + b_n: [B, T, n], without the [B·T, F] products."""
    layer = nn.Dense(n)
    layer(jnp.zeros((0, x.shape[-1]), x.dtype))  # creates (init) or binds its parameters
    kernel, bias = layer.variables["params"]["kernel"], layer.variables["params"]["bias"]
    return jnp.einsum("bfn,tf->btn", x[:, :, None] * kernel, phi) + bias


def factored_output(x: jax.Array, phi: jax.Array, num_actions: int, dueling: bool) -> jax.Array:
    """:func:`output_layer` (one value per action, plain or dueling; not noisy) of the
    products x_b ⊙ φ_t, by :func:`factored_dense`: [B, T, A]; the same parameters and the
    same values (to rounding) as applying it to the [B·T, F] products."""
    if not dueling:
        return factored_dense(num_actions, x, phi)
    value = factored_dense(1, x, phi)
    adv = factored_dense(num_actions, x, phi)
    return value + adv - jnp.mean(adv, axis=-1, keepdims=True)


def last_layer(
    x: jax.Array,
    tau: jax.Array | None,
    num_actions: int,
    head: Head | None,
    noisy: bool,
    mean_levels: bool = False,
) -> jax.Array:
    """:func:`quantile_embedding_layer` for an ``iqn`` head (at ``tau`` [B, T] or [T], by
    default the ``head.size`` midpoints τ̂; with ``mean_levels`` their mean), else
    :func:`output_layer`."""
    if head is not None and head.takes_levels:
        return quantile_embedding_layer(x, tau, num_actions, head, noisy, mean_levels)
    return output_layer(x, num_actions, head, noisy)


class Activation(nn.Module):
    """A hidden layer's nonlinearity, h = fn(x), that sows h into the ``intermediates``
    collection (as ``features``) when that collection is mutable — how the diagnostics read
    each layer's units (:func:`qlearn.diagnostics.captured_activations`); otherwise nothing
    is stored and the program is that of ``fn`` alone."""

    fn: Callable[[jax.Array], jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.fn(x)
        self.sow("intermediates", "features", h)
        return h


def hidden_layers(
    x: jax.Array,
    widths: Sequence[int],
    activation: Callable[[jax.Array], jax.Array],
    layer_norm: bool,
    noisy: bool,
) -> jax.Array:
    """The fully connected hidden layers h_l = act(LayerNorm?(W_l h_{l-1} + b_l)), one per
    width, on features x [B, F] (:class:`NoisyDense` with ``noisy``): what every network but
    the linear one puts between its features and its :func:`last_layer`. Called inside a
    network's compact ``__call__``, so the layers are the network's own (``Dense_0``, …)."""
    for width in widths:
        x = dense(width, noisy)(x)
        if layer_norm:
            x = nn.LayerNorm()(x)
        x = Activation(activation)(x)
    return x


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
    def __call__(
        self, obs: jax.Array, tau: jax.Array | None = None, mean_levels: bool = False
    ) -> jax.Array:
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        act = ACTIVATIONS[self.activation]
        x = hidden_layers(x, self.hidden_sizes, act, self.layer_norm, self.noisy)
        return last_layer(x, tau, self.num_actions, self.head, self.noisy, mean_levels)


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
    """A 'VALID' 2-D convolution of strides (sh, sw) computed as one matrix product over image
    patches:

        y[b, i, j, o] = Σ_{di,dj,c} x[b, sh·i + di, sw·j + dj, c] · kernel[di, dj, c, o] + bias[o],

    x [B, H, W, C] → y [B, ⌊(H − kh)/sh⌋ + 1, ⌊(W − kw)/sw⌋ + 1, features]. The same maths and
    parameters (kernel [kh, kw, C, features], bias [features]) as
    ``flax.linen.Conv(padding='VALID', strides=...)``;
    written as patches @ kernel because XLA:CPU runs a convolution inside ``lax.scan`` ≈ 4×
    slower than the equal matrix product (a MinAtar PQN update: 15 ms vs 3 ms per minibatch of
    128 on 2 cores), and the training loops are scans. On GPU it is one batched matmul too.

    Attributes:
      features: output channels.
      kernel_size: (kh, kw).
      strides: (sh, sw).
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        channels = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (kh, kw, channels, self.features)
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        sh, sw = self.strides
        h, w = (x.shape[-3] - kh) // sh + 1, (x.shape[-2] - kw) // sw + 1
        if (sh, sw) != (1, 1) and kh % sh == 0 and kw % sw == 0:
            x, kernel = space_to_depth(x, kernel, (h, w), (sh, sw))
            (kh, kw, channels, _), (sh, sw) = kernel.shape, (1, 1)
        rows, cols = sh * (h - 1) + 1, sw * (w - 1) + 1  # where the first and last windows start
        patches = jnp.concatenate(
            [x[..., i : i + rows : sh, j : j + cols : sw, :] for i in range(kh) for j in range(kw)],
            axis=-1,
        )  # [B, h, w, kh·kw·C], ordered (di, dj, c) like the kernel's leading axes
        return patches @ kernel.reshape(kh * kw * channels, self.features) + bias


def space_to_depth(
    x: jax.Array, kernel: jax.Array, out: tuple[int, int], strides: tuple[int, int]
) -> tuple[jax.Array, jax.Array]:
    """A 'VALID' convolution of strides (sh, sw) dividing its kernel [kh, kw, C, O] as a
    stride-1 one: each block of sh×sw pixels of x [..., H, W, C] becomes one pixel of sh·sw·C
    channels, the kernel [kh/sh, kw/sw, sh·sw·C, O] (x cropped to the rows and columns the
    ``out`` = (h, w) windows read). The same sums, over kh/sh · kw/sw patches instead of
    kh · kw: a smaller program (the Nature torso's 8×8 stride-4 layer: 4 slices, not 64)."""
    (h, w), (sh, sw) = out, strides
    kh, kw, channels, features = kernel.shape
    rows, cols = h - 1 + kh // sh, w - 1 + kw // sw  # in blocks
    x = x[..., : rows * sh, : cols * sw, :].reshape(*x.shape[:-3], rows, sh, cols, sw, channels)
    x = jnp.swapaxes(x, -4, -3).reshape(*x.shape[:-5], rows, cols, sh * sw * channels)
    kernel = kernel.reshape(kh // sh, sh, kw // sw, sw, channels, features)
    kernel = kernel.transpose(0, 2, 1, 3, 4, 5).reshape(kh // sh, kw // sw, -1, features)
    return x, kernel


MINATAR_TORSO = ((16, 3, 1),)
"""The MinAtar Q-network's convolutions (Young & Tian 2019): (channels, kernel size, stride)."""
NATURE_TORSO = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
"""The Nature DQN's convolutions (Mnih et al. 2015): (channels, kernel size, stride); 'VALID'
like the paper, so 84×84 → 20×20 → 9×9 → 7×7 (3136 features; 'SAME' would keep 21 → 11 → 11,
7744 features, and let images too small for the strides through as mostly padding)."""
TORSOS = {"cnn": MINATAR_TORSO, "nature_cnn": NATURE_TORSO}
"""The convolutions of each convolutional network kind."""


def smallest_image(torso: Sequence[tuple[int, int, int]]) -> int:
    """The least height (width) of an image that every 'VALID' convolution of ``torso`` still
    covers with at least one window: 3 for MinAtar's, 36 for the Nature DQN's."""
    size = 1
    for _, kernel, stride in reversed(torso):
        size = (size - 1) * stride + kernel
    return size


class ConvQNetwork(nn.Module):
    """A convolutional Q-network: 'VALID' convolutions (:class:`Conv2D`), ReLU after each,
    flattened, then dense hidden layers (:func:`hidden_layers`, ReLU) and the action values
    (:func:`last_layer`); LayerNorm before each ReLU if asked (as PQN uses it). With
    :data:`MINATAR_TORSO` and one hidden layer of 128 it is the MinAtar Q-network of Young &
    Tian (2019); with :data:`NATURE_TORSO` and one of 512, the Nature DQN's (Mnih et al. 2015).
    Observations are taken as they come (no 1/255 scaling of pixels).

    Attributes:
      num_actions: A.
      torso: the convolutions, (channels, kernel size, stride) each.
      hidden_sizes: widths of the dense layers.
      layer_norm: LayerNorm after each convolution and dense layer.
      head: the last layer's :class:`Head` (as for :class:`MLPQNetwork`).
      noisy: the dense layers are :class:`NoisyDense` (the convolutions are not).
    """

    num_actions: int
    torso: tuple[tuple[int, int, int], ...] = MINATAR_TORSO
    hidden_sizes: Sequence[int] = (128,)
    layer_norm: bool = False
    head: Head | None = None
    noisy: bool = False

    @nn.compact
    def __call__(
        self, obs: jax.Array, tau: jax.Array | None = None, mean_levels: bool = False
    ) -> jax.Array:
        x = conv_layers(obs.astype(jnp.float32), self.torso, self.layer_norm)
        x = x.reshape(obs.shape[0], -1)
        x = hidden_layers(x, self.hidden_sizes, nn.relu, self.layer_norm, self.noisy)
        return last_layer(x, tau, self.num_actions, self.head, self.noisy, mean_levels)


def conv_layers(x: jax.Array, torso: Sequence[tuple[int, int, int]], layer_norm: bool) -> jax.Array:
    """The convolutions of ``torso`` ((channels, kernel size, stride) each, :class:`Conv2D`)
    on images x [B, H, W, C], each followed by LayerNorm (with ``layer_norm``) and ReLU. Called
    inside a network's compact ``__call__``, so the layers are the network's own."""
    for features, size, stride in torso:
        x = Conv2D(features, (size, size), (stride, stride))(x)
        if layer_norm:
            x = nn.LayerNorm()(x)
        x = Activation(nn.relu)(x)
    return x


KINDS = ("mlp", "linear", "cnn", "nature_cnn")


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
    """The Q-network a config names: ``"mlp"``, ``"linear"`` (no bias), ``"cnn"`` (MinAtar;
    its dense width is ``hidden_sizes[0]``) or ``"nature_cnn"`` (the Nature DQN torso; its
    dense layers are ``hidden_sizes``, the paper's (512,)), with A·K outputs for ``head``
    (K = ``head.size``), its fully connected layers :class:`NoisyDense` with ``noisy``. Raises
    ValueError for a CNN on non-image observations or on images smaller than its convolutions
    take (:func:`smallest_image`), a dueling or noisy linear network or an unknown kind."""
    if kind == "mlp":
        return MLPQNetwork(num_actions, tuple(hidden_sizes), activation, layer_norm, head, noisy)
    if kind == "linear":
        for name, on in (("dueling", head.dueling), ("noisy", noisy)):
            if on:
                raise ValueError(
                    f"config.{name} needs config.network = 'mlp', 'cnn' or 'nature_cnn', "
                    "not 'linear'"
                )
        if head.takes_levels:
            raise ValueError(
                f"config.head = '{head.kind}' needs config.network = 'mlp', 'cnn' or "
                "'nature_cnn' (features to embed τ into), not 'linear'"
            )
        return LinearQNetwork(num_actions * head.size)
    if kind in TORSOS:
        if len(obs_shape) != 3:
            raise ValueError(
                f"config.network = '{kind}' needs image observations [H, W, C]; this env's are "
                f"{tuple(obs_shape)}"
            )
        torso, smallest = TORSOS[kind], smallest_image(TORSOS[kind])
        if min(obs_shape[:2]) < smallest:
            convs = ", ".join(f"{k}×{k} stride {s}" for _, k, s in torso)
            raise ValueError(
                f"config.network = '{kind}' needs images of at least {smallest}×{smallest} "
                f"pixels (its 'VALID' convolutions: {convs}); this env's are {tuple(obs_shape)}"
            )
        widths = tuple(hidden_sizes)
        if kind == "cnn":
            widths = (widths or (128,))[:1]
        return ConvQNetwork(num_actions, torso, widths, layer_norm, head, noisy)
    raise ValueError(f"config.network = '{kind}' must be one of {', '.join(KINDS)}")


# -- value functions of heads ---------------------------------------------------------------


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
        or the values themselves (scalar, K = 1). A head that takes levels (``iqn``) gives
        the values at the levels ``tau`` [B, T] or [T] (shared by the batch; K = T), by
        default at the K = ``head.size`` midpoints τ̂."""
        if not self.head.takes_levels:
            out = self.apply(params, obs)
            return out.reshape(out.shape[0], -1, self.head.size)
        if tau is None:
            tau = jnp.broadcast_to(
                quantile_midpoints(self.head.size), (obs.shape[0], self.head.size)
            )
        out = self.apply(params, obs, tau)
        return out.reshape(out.shape[0], -1, tau.shape[-1])

    def mean_at(self, params: Any, obs: jax.Array, tau: jax.Array) -> jax.Array:
        """An ``iqn`` head's mean over the levels ``tau`` [B, T]: (1/T) Σ_t Z_{τ_t}(s, ·),
        [B, A]. At T levels τ_t ~ U(0, 1) it is an unbiased estimate of q̂ = ∫₀¹ Z_τ dτ (IQN's
        action selection, Dabney et al. 2018b: T = K = 32); see :func:`qlearn.heads.
        sample_levels`. Levels [T] shared by the batch take the mean inside the network, where
        it costs one last layer on B rows (:func:`quantile_embedding_layer`'s
        ``mean_levels``)."""
        if tau.ndim == 1:
            return self.apply(params, obs, tau, mean_levels=True)
        return jnp.mean(self.outputs(params, obs, tau), axis=-1)

    def __call__(self, params: Any, obs: jax.Array) -> jax.Array:
        """q̂(s, ·) [B, A]: the expected value under the head's distribution
        (:meth:`qlearn.heads.Head.values`) — Σ_k softmax(ℓ)_k z_k (categorical, histogram),
        the mean of the quantiles (quantile; iqn at its midpoints τ̂, a deterministic
        quadrature of ∫ Z_τ dτ, where Dabney et al. average sampled τ), the output itself
        (scalar)."""
        return self.head.values(self, params, obs)
