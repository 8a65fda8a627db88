"""Value heads: what a Q-network's K outputs per action mean, as objects.

A head (:class:`Head`) knows its size K, whether its last layer is dueling, and what the rest
of qlearn asks of it: the support its outputs live on (from hyperparameters: a categorical
head's atoms over [v_min, v_max]), the expected value q̂ of its outputs, whether it takes
quantile levels τ as an input (and so a key per batch), and which ground-truth return
distribution a finite MDP can grade it against. A new head is one subclass here, added to
:data:`HEADS`; nothing else switches on a head's name.

The heads: :class:`Scalar` (one value, K = 1), :class:`Categorical` (C51's logits over K
atoms), :class:`Histogram` (logits of K equal bins over [v_min, v_max], for classification
losses), :class:`Quantile` (QR-DQN's K quantile values) and :class:`IQN` (values at levels τ
given as an input, Dabney et al. 2018b).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from qlearn.hparams import HParamError
from qlearn.types import ConfigError


def categorical_support(v_min: Any, v_max: Any, num_atoms: int) -> jax.Array:
    """The atoms z_k = v_min + k (v_max − v_min) / (K − 1), k = 0..K−1, [K] (C51's fixed
    support; ``v_min``/``v_max`` may be traced hyperparameters)."""
    return v_min + (v_max - v_min) * jnp.arange(num_atoms, dtype=jnp.float32) / (num_atoms - 1)


def histogram_centres(v_min: Any, v_max: Any, num_bins: int) -> jax.Array:
    """The centres c_k = v_min + (k + ½)(v_max − v_min) / K of K equal bins over
    [v_min, v_max], [K] (a histogram head's values)."""
    width = (v_max - v_min) / num_bins
    return v_min + width * (jnp.arange(num_bins, dtype=jnp.float32) + 0.5)


def sample_levels(key: jax.Array, batch: int | None, num_levels: int) -> jax.Array:
    """Quantile levels τ ~ U(0, 1) (IQN's sampled τ): [batch, num_levels], each sample's own;
    with ``batch`` None, [num_levels], one set shared by a whole batch."""
    shape = (num_levels,) if batch is None else (batch, num_levels)
    return jax.random.uniform(key, shape)


def quantile_midpoints(num_quantiles: int) -> jax.Array:
    """τ̂_i = (2i + 1) / (2N), i = 0..N−1, [N]: the quantile levels a quantile head's outputs
    estimate (Dabney et al. 2018)."""
    return (2 * jnp.arange(num_quantiles, dtype=jnp.float32) + 1) / (2 * num_quantiles)


@dataclasses.dataclass(frozen=True)
class Head:
    """A value head: ``size`` K outputs per action, a ``dueling`` last layer or not (Wang et
    al. 2016; per atom or quantile for K > 1, as Rainbow). Subclasses say what the outputs
    mean."""

    size: int = 1
    dueling: bool = False

    kind: ClassVar[str] = ""
    """its name in ``config.head``."""
    size_field: ClassVar[str | None] = None
    """the config field that gives K (None: K = 1)."""
    spans_values: ClassVar[bool] = False
    """its support spans [hp.v_min, hp.v_max]."""
    takes_levels: ClassVar[bool] = False
    """it takes quantile levels τ as an input, so a loss samples them from a key per batch."""
    truth: ClassVar[str | None] = None
    """the ground-truth return distribution a finite MDP grades it against: 'categorical'
    (the projected fixed point on its atoms), 'quantile' (the quantile fixed point at its
    midpoints) or None."""

    def support(self, hp: Any) -> jax.Array | None:
        """The values its outputs are distributions over, [K] (None: none)."""
        return None

    def expected(self, outputs: jax.Array, support: jax.Array | None) -> jax.Array:
        """q̂ [B, A] of the head's outputs [B, A, K]."""
        raise NotImplementedError

    def values(self, q_fn: Any, params: Any, obs: jax.Array) -> jax.Array:
        """q̂(s, ·) [B, A] of the Q-function ``q_fn`` (a :class:`qlearn.networks.QFunction`
        with this head): the expected value of its outputs."""
        return self.expected(q_fn.outputs(params, obs), q_fn.support)

    def check_hparams(self, hp: Any) -> None:
        """Raise :class:`~qlearn.hparams.HParamError` where (batched) ``hp`` do not fit."""
        if not self.spans_values:
            return
        low, high = np.atleast_1d(hp.v_min), np.atleast_1d(hp.v_max)
        bad = np.flatnonzero(~(low < high))
        if bad.size:
            i = bad[0]
            raise HParamError(
                f"hyperparameter v_min = {low[i % low.size]:g} must be < v_max = "
                f"{high[i % high.size]:g} (the {self.kind} head spans [v_min, v_max])"
            )


@dataclasses.dataclass(frozen=True)
class Scalar(Head):
    """One value per action: the output itself."""

    kind: ClassVar[str] = "scalar"

    def expected(self, outputs: jax.Array, support: jax.Array | None) -> jax.Array:
        return outputs[..., 0]

    def values(self, q_fn: Any, params: Any, obs: jax.Array) -> jax.Array:
        return q_fn.apply(params, obs)  # the network's outputs are the values


@dataclasses.dataclass(frozen=True)
class Categorical(Head):
    """C51: the logits of a categorical distribution over K atoms spanning [v_min, v_max];
    q̂ = Σ_k softmax(ℓ)_k z_k."""

    kind: ClassVar[str] = "categorical"
    size_field: ClassVar[str | None] = "num_atoms"
    spans_values: ClassVar[bool] = True
    truth: ClassVar[str | None] = "categorical"

    def support(self, hp: Any) -> jax.Array:
        return categorical_support(hp.v_min, hp.v_max, self.size)

    def expected(self, outputs: jax.Array, support: jax.Array | None) -> jax.Array:
        return jax.nn.softmax(outputs, axis=-1) @ support


@dataclasses.dataclass(frozen=True)
class Histogram(Categorical):
    """The logits of K equal bins over [v_min, v_max] whose centres are the values
    (HL-Gauss, two-hot); q̂ = Σ_k softmax(ℓ)_k c_k."""

    kind: ClassVar[str] = "histogram"
    truth: ClassVar[str | None] = None

    def support(self, hp: Any) -> jax.Array:
        return histogram_centres(hp.v_min, hp.v_max, self.size)


@dataclasses.dataclass(frozen=True)
class Quantile(Head):
    """QR-DQN: K quantile values at the midpoints τ̂; q̂ is their mean."""

    kind: ClassVar[str] = "quantile"
    size_field: ClassVar[str | None] = "num_quantiles"
    truth: ClassVar[str | None] = "quantile"

    def expected(self, outputs: jax.Array, support: jax.Array | None) -> jax.Array:
        return jnp.mean(outputs, axis=-1)


@dataclasses.dataclass(frozen=True)
class IQN(Quantile):
    """IQN: the values at levels τ given as an input (embedded by cosines); by default at the
    K midpoints τ̂, whose mean is q̂ (a deterministic quadrature of ∫ Z_τ dτ)."""

    kind: ClassVar[str] = "iqn"
    takes_levels: ClassVar[bool] = True
    shared_levels: bool = False
    """q̂ from the midpoints embedded once for the batch, the mean taken inside the network
    (:meth:`qlearn.networks.QFunction.mean_at`), rather than given to each sample as its own
    levels: ``config.iqn_shared_levels``, whose losses share their levels too. Equal up to
    rounding; far cheaper when acting."""

    def values(self, q_fn: Any, params: Any, obs: jax.Array) -> jax.Array:
        if self.shared_levels:
            return q_fn.mean_at(params, obs, quantile_midpoints(self.size))
        return super().values(q_fn, params, obs)


HEADS: dict[str, type[Head]] = {h.kind: h for h in (Scalar, Categorical, Histogram, Quantile, IQN)}
"""Every head, by its ``config.head`` name."""

SCALAR = Scalar()
"""The head of one value per action."""


FIELDS: dict[str, tuple[Any, str]] = {
    "head": (
        "scalar",
        "value head: 'scalar', 'categorical' (C51: num_atoms atoms over [v_min, v_max]), "
        "'histogram' (num_atoms bins over [v_min, v_max]: hl_gauss, two_hot) or 'quantile' "
        "(QR-DQN: num_quantiles quantiles) or 'iqn' (values at num_quantiles sampled levels τ, "
        "embedded by cosines)",
    ),
    "dueling": (
        False,
        "dueling last layer V + (A − mean A), per atom/quantile for a distributional head",
    ),
    "num_atoms": (
        51,
        "atoms of a categorical head, bins of a histogram one (≥ 2)",
    ),
    "num_quantiles": (
        32,
        "quantiles of a quantile head; for an iqn head N, the levels τ ~ U(0, 1) sampled per "
        "replayed sample for the online network, and the midpoints τ̂ its q̂ (evaluation, "
        "metrics) is the mean at (≥ 2; the loss pairs N × N′ terms per sample; Dabney et al. "
        "2018b: N = 64)",
    ),
    "iqn_target_quantiles": (
        None,
        "iqn head (other heads ignore it): N′, the levels τ′ ~ U(0, 1) sampled per replayed "
        "sample for the target network (≥ 1; None: N = num_quantiles; Dabney et al. 2018b: "
        "N′ = 64)",
    ),
    "iqn_action_quantiles": (
        None,
        "iqn head (other heads ignore it): K, the levels τ ~ U(0, 1) drawn afresh per "
        "decision to choose actions by "
        "their mean, when acting and for the target's a* (≥ 1; None: the num_quantiles "
        "midpoints τ̂, deterministic; Dabney et al. 2018b: K = 32). The greedy evaluation and "
        "the metrics use the midpoints",
    ),
    "iqn_shared_levels": (
        False,
        "iqn loss (other losses ignore it): draw the N, N′ (and K) levels once per replay "
        "batch, shared by its samples, instead of per sample (Dabney et al. 2018b); each "
        "sample's loss stays an unbiased estimate, and the cosine embedding runs on N rows "
        "instead of B·N, much cheaper; the samples' levels are then correlated",
    ),
}
"""The static fields that choose a head (name -> (default, help)), declared by a config with
:func:`qlearn.types.table_field`."""


HPARAMS: dict[str, dict[str, Any]] = {
    "v_min": dict(
        default=-10.0,
        help="lowest value of a categorical/histogram head",
    ),
    "v_max": dict(
        default=10.0,
        help="highest value of a categorical/histogram head (> v_min)",
    ),
}
"""The hyperparameters of a head's support (name -> :func:`qlearn.hparams.field` keywords),
declared with :func:`qlearn.hparams.table_field`."""


def make(kind: str, size: int = 1, dueling: bool = False) -> Head:
    """The head called ``kind`` (:data:`HEADS`) of ``size`` outputs per action."""
    if kind not in HEADS:
        raise ValueError(f"config.head = '{kind}' must be one of {', '.join(HEADS)}")
    return HEADS[kind](size, dueling)


def check_config(config: Any) -> None:
    """Raise :class:`~qlearn.types.ConfigError` unless the head fields of ``config``
    (:data:`FIELDS`) name a head of :data:`HEADS` with sizes it takes: ``num_atoms`` and
    ``num_quantiles`` integers ≥ 2 (checked whatever the head, so a static grid over heads
    may set them), N′ and K (``iqn_target_quantiles``, ``iqn_action_quantiles``) None or
    integers ≥ 1."""
    if config.head not in HEADS:
        raise ConfigError(f"config.head = '{config.head}' must be one of {', '.join(HEADS)}")
    for name, least, optional in (
        ("num_atoms", 2, False),
        ("num_quantiles", 2, False),
        ("iqn_target_quantiles", 1, True),
        ("iqn_action_quantiles", 1, True),
    ):
        value = getattr(config, name)
        if optional and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(
                f"config.{name} = {value!r} must be an integer ≥ {least}"
                + (" or None" if optional else "")
            )


def of_config(config: Any) -> Head:
    """The head a config names: ``config.head``, its size from the field the head reads
    (:attr:`Head.size_field`), ``config.dueling`` (and for ``iqn``,
    ``config.iqn_shared_levels``)."""
    cls = HEADS[config.head]  # the config's check_config has refused an unknown name
    head = cls(getattr(config, cls.size_field) if cls.size_field else 1, config.dueling)
    if cls is IQN and getattr(config, "iqn_shared_levels", False):
        head = IQN(head.size, head.dueling, shared_levels=True)
    return head
