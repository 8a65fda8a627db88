"""DQN (Mnih et al. 2015) with the semi-gradient TD loss, Double-Q and Polyak or periodic
target updates: ``make_train(config) -> train(key, hparams) -> (final_state, metrics)``.

``config`` (:class:`DQNConfig`) is static: it fixes array shapes and program structure.
``hparams`` (:class:`DQNHParams`) is a pytree of numbers, so::

    train = make_train(DQNConfig())
    run = jax.jit(jax.vmap(jax.vmap(train, (0, None)), (None, 0)))
    final_state, metrics = run(seed_keys, hparam_batch)      # metrics[k]: [H, S, T]

runs every hyperparameter configuration × seed in ONE compiled program.

One run, all inside one ``lax.scan``:
  1. warm-up: ``learning_starts`` env steps with the ε schedule, filling the replay buffer;
  2. ``num_evals`` intervals, each of equal length. An interval is a scan of iterations; an
     iteration steps the ``num_envs`` envs ``train_every`` times, then does
     ``updates_per_train`` gradient updates on replay batches (uniform, or prioritised:
     ``replay="prioritized"``);
  3. at the end of each interval: greedy evaluation on fresh envs and the interval's metrics.
Metrics therefore have a fixed length T = ``num_evals``: memory does not grow with steps.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from qlearn import dp, envs, hparams, losses, networks, policies, replay
from qlearn import return_distributions as rd
from qlearn.algos import deep_q, rollout
from qlearn.envs.finite import FiniteMDPState
from qlearn.types import ConfigError, LossFn, Params, QFn, Transition, config_field

REPLAYS = ("uniform", "prioritized", "coverage")


@dataclasses.dataclass(frozen=True)
class DQNConfig(envs.EnvConfig):
    """Static configuration of a DQN run: everything that changes shapes or program structure.

    Hashable and immutable; validated on construction (a bad value raises
    :class:`~qlearn.types.ConfigError` naming the field).
    """

    num_envs: int = config_field(10, "parallel training environments")
    total_steps: int = config_field(100_000, "env steps per run (summed over the parallel envs)")
    learning_starts: int = config_field(5_000, "env steps collected before the first update")
    buffer_size: int = config_field(50_000, "replay capacity in transitions")
    batch_size: int = config_field(64, "transitions per gradient update")
    train_every: int = config_field(1, "vectorised env steps between blocks of updates")
    n_step: int = config_field(1, "n of n-step returns: replay stores n-step transitions")
    updates_per_train: int = config_field(1, "gradient updates per block")
    network: str = config_field(
        "mlp",
        "'mlp', 'linear' (no bias: tabular on one-hot observations), 'cnn' (MinAtar: one 3×3 "
        "conv) or 'nature_cnn' (the Nature DQN's strided convs, for images of at least 36×36)",
    )
    hidden_sizes: tuple[int, ...] = config_field(
        (128,),
        "MLP hidden widths (cnn: its dense width is the first; nature_cnn: its dense layers)",
    )
    activation: str = config_field("relu", f"MLP activation: {', '.join(networks.ACTIVATIONS)}")
    layer_norm: bool = config_field(True, "LayerNorm after each hidden layer")
    target_network: bool = config_field(
        True, "bootstrap from a target network (else from θ itself)"
    )
    double_q: bool = config_field(
        True,
        "Double-Q target (built-in losses; munchausen picks its π′ by munchausen_next_policy). "
        "With noisy=true the online network selects a* under the same noise it is trained "
        "with (Fortunato et al. draw a separate one for the selection)",
    )
    head: str = config_field(
        "scalar",
        "value head: 'scalar', 'categorical' (C51: num_atoms atoms over [v_min, v_max]), "
        "'histogram' (num_atoms bins over [v_min, v_max]: hl_gauss, two_hot) or 'quantile' "
        "(QR-DQN: num_quantiles quantiles) or 'iqn' (values at num_quantiles sampled levels τ, "
        "embedded by cosines)",
    )
    dueling: bool = config_field(
        False, "dueling last layer V + (A − mean A), per atom/quantile for a distributional head"
    )
    noisy: bool = config_field(
        False,
        "NoisyNet (Fortunato et al. 2018): factorised Gaussian noise in the fully connected "
        "layers, σ₀ = hparam noisy_sigma0; fresh noise per env step and per update (online "
        "and target apart); the greedy policy and every metric use the mean network. "
        "ε-greedy stays on (eps_start, eps_end as without noise), where Fortunato et al. use "
        "ε = 0: for exploration by noise alone set eps_start = eps_end = 0",
    )
    num_atoms: int = config_field(51, "atoms of a categorical head, bins of a histogram one (≥ 2)")
    num_quantiles: int = config_field(
        32,
        "quantiles of a quantile head; for an iqn head N, the levels τ ~ U(0, 1) sampled per "
        "replayed sample for the online network, and the midpoints τ̂ its q̂ (evaluation, "
        "metrics) is the mean at (≥ 2; the loss pairs N × N′ terms per sample; Dabney et al. "
        "2018b: N = 64)",
    )
    iqn_target_quantiles: int | None = config_field(
        None,
        "iqn head (other heads ignore it): N′, the levels τ′ ~ U(0, 1) sampled per replayed "
        "sample for the target network (≥ 1; None: N = num_quantiles; Dabney et al. 2018b: "
        "N′ = 64)",
    )
    iqn_action_quantiles: int | None = config_field(
        None,
        "iqn head (other heads ignore it): K, the levels τ ~ U(0, 1) drawn afresh per "
        "decision to choose actions by "
        "their mean, when acting and for the target's a* (≥ 1; None: the num_quantiles "
        "midpoints τ̂, deterministic; Dabney et al. 2018b: K = 32). The greedy evaluation and "
        "the metrics use the midpoints",
    )
    loss: str | LossFn | tuple[str | LossFn, ...] = config_field(
        "huber",
        "'huber', 'mse', 'residual', 'dqn_reg', 'munchausen' (scalar head), 'c51' "
        "(categorical head), "
        "'hl_gauss', 'two_hot' (histogram head), 'qr' (quantile head), 'iqn' (iqn head), "
        "'package.module:function', a loss function, or a tuple of these (hparam loss_index "
        "picks one: losses compared in one compile)",
    )
    munchausen_next_policy: str = config_field(
        "target",
        "munchausen loss (other losses ignore it): the network whose softmax is π′ at s′: "
        "'target' (q⁻; Vieillard et "
        "al. 2020 use the target network for the log-policy bonus at s and for π′) or 'online' "
        "(q, Double-Q style: what loss=munchausen did with double_q=true before this field)",
    )
    replay: str = config_field(
        "uniform",
        "'uniform', 'prioritized' (proportional, Schaul et al. 2016: hparams per_alpha, "
        "per_beta, per_eps, config per_normalise; the loss must report aux['priority'], as "
        "the built-ins do) or "
        "'coverage' (finite MDPs: uniform replay with a fraction hparam coverage of each batch "
        "drawn from the model at (s, a) uniform over the reachable pairs)",
    )
    per_normalise: str = config_field(
        "batch",
        "prioritised replay (ignored otherwise): what the importance weights (N·P(i))^−β are "
        "divided by: 'batch' "
        "(their max over the batch, as Dopamine; biased even at β = 1) or 'buffer' (their max "
        "over the buffer, (N·min P)^−β, kept by a min tree: one constant per step, so at β = 1 "
        "the expected gradient is a positive multiple of uniform replay's)",
    )
    num_evals: int = config_field(20, "evaluation points (metrics have this many time steps)")
    eval_episodes: int = config_field(10, "greedy episodes per evaluation")
    divergence_bound: float = config_field(
        1e6, "a run with |Q| above this (or NaN/inf) is diverged"
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(w) for w in self.hidden_sizes))
        if isinstance(self.loss, list):
            object.__setattr__(self, "loss", tuple(self.loss))
        object.__setattr__(self, "env_kwargs", envs.kwargs_tuple(self.env_kwargs))
        self._validate()

    def validate_hparams(self, hp: DQNHParams) -> None:
        """Checks of hyperparameters against this config (before anything compiles)."""
        if envs.is_finite(self.env_id):  # q* of the true-error metrics needs finite values
            dp.check_discounts(deep_q.make_env(self)[1], hp.gamma)
        deep_q.check_loss_index(self, hp)
        if self.head in ("categorical", "histogram"):
            low, high = np.atleast_1d(hp.v_min), np.atleast_1d(hp.v_max)
            bad = np.flatnonzero(~(low < high))
            if bad.size:
                i = bad[0]
                raise hparams.HParamError(
                    f"hyperparameter v_min = {low[i % low.size]:g} must be < v_max = "
                    f"{high[i % high.size]:g} (the {self.head} head spans [v_min, v_max])"
                )

    def _validate(self) -> None:
        def fail(msg: str) -> None:
            raise ConfigError(msg)

        deep_q.check_shared(self, self.value_head, self.noisy)
        deep_q.check_counts(
            self,
            (
                "total_steps",
                "buffer_size",
                "batch_size",
                "train_every",
                "updates_per_train",
                "n_step",
            ),
        )
        deep_q.check_counts(self, ("learning_starts",), minimum=0)
        deep_q.check_counts(self, ("num_atoms", "num_quantiles"), minimum=2)
        if self.replay not in REPLAYS:
            fail(f"config.replay = '{self.replay}' must be one of {', '.join(REPLAYS)}")
        if self.per_normalise not in replay.NORMALISATIONS:
            fail(
                f"config.per_normalise = '{self.per_normalise}' must be one of "
                f"{', '.join(replay.NORMALISATIONS)}"
            )
        self._validate_iqn()
        if self.replay == "coverage" and not envs.is_finite(self.env_id):
            fail(
                f"config.replay = 'coverage' draws transitions from the model of a finite MDP "
                f"(Garnet, CliffWalking, ...); {self.env_id} has none"
            )
        if self.head not in networks.HEADS:
            fail(f"config.head = '{self.head}' must be one of {', '.join(networks.HEADS)}")
        try:
            losses.check_heads(self.loss, self.head)
        except ValueError as e:
            fail(str(e))
        loss_names = self.loss if isinstance(self.loss, tuple) else (self.loss,)
        if self.munchausen_next_policy not in losses.MUNCHAUSEN_NEXT_POLICIES:
            fail(
                f"config.munchausen_next_policy = '{self.munchausen_next_policy}' must be one "
                f"of {', '.join(losses.MUNCHAUSEN_NEXT_POLICIES)}"
            )
        if "munchausen" in loss_names and deep_q.masks_actions(self):
            fail(
                f"config.loss = 'munchausen' needs the action mask of each replayed state s "
                f"(its log-policy bonus), which replay does not store, and {self.env_id} has "
                "action masks"
            )
        if self.batch_size > self.buffer_size:
            fail(
                f"config.batch_size = {self.batch_size} must be ≤ buffer_size = {self.buffer_size}"
            )
        if self.num_envs * self.n_step > self.buffer_size:
            fail(
                f"config.num_envs × n_step = {self.num_envs * self.n_step} must be ≤ "
                f"buffer_size = {self.buffer_size}"
            )
        if self.n_step > 1 and self._warmup_vector_steps + self.train_every < self.n_step:
            fail(
                f"config.learning_starts = {self.learning_starts} leaves the replay buffer "
                f"without a whole {self.n_step}-step item at the first update: it must be ≥ "
                f"{(self.n_step - self.train_every) * self.num_envs} (n_step − train_every) × "
                "num_envs"
            )
        if self.learning_starts >= self.total_steps:
            fail(
                f"config.learning_starts = {self.learning_starts} must be < "
                f"total_steps = {self.total_steps}"
            )
        try:
            losses.resolve(self.loss, **self.loss_options)
        except ValueError as e:
            fail(str(e))
        if self.iters_per_eval < 1:
            need = (self._warmup_vector_steps + self.num_evals * self.train_every) * self.num_envs
            fail(
                f"config.total_steps = {self.total_steps} does not cover one update per "
                f"evaluation interval: it must be ≥ {need} (learning_starts + num_evals × "
                "train_every × num_envs)"
            )

    def _validate_iqn(self) -> None:
        """N′ and K: None or integers ≥ 1 (read by an iqn head only, like num_quantiles by
        quantile heads, so a static grid over heads may set them)."""
        for name in ("iqn_target_quantiles", "iqn_action_quantiles"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ConfigError(f"config.{name} = {value!r} must be an integer ≥ 1 or None")

    @property
    def loss_options(self) -> dict[str, Any]:
        """The keywords of :func:`qlearn.losses.resolve` this config gives."""
        return {
            "double_q": self.double_q,
            "munchausen_next_policy": self.munchausen_next_policy,
            "iqn_target_quantiles": self.iqn_target_quantiles,
            "iqn_action_quantiles": self.iqn_action_quantiles,
        }

    @property
    def value_head(self) -> networks.Head:
        """The Q-network's :class:`~qlearn.networks.Head`."""
        size = {
            "categorical": self.num_atoms,
            "histogram": self.num_atoms,
            "quantile": self.num_quantiles,
            "iqn": self.num_quantiles,
        }
        return networks.Head(self.head, size.get(self.head, 1), self.dueling)

    @property
    def _warmup_vector_steps(self) -> int:
        return math.ceil(self.learning_starts / self.num_envs)

    @property
    def iters_per_eval(self) -> int:
        """Iterations (``train_every`` env steps + ``updates_per_train`` updates) per interval."""
        vector_steps = self.total_steps // self.num_envs - self._warmup_vector_steps
        return vector_steps // self.train_every // self.num_evals

    @property
    def steps_per_eval(self) -> int:
        """Env steps per evaluation interval (after warm-up)."""
        return self.iters_per_eval * self.train_every * self.num_envs

    @property
    def actual_total_steps(self) -> int:
        """Env steps a run really takes: ``total_steps`` rounded down to whole intervals."""
        return self._warmup_vector_steps * self.num_envs + self.num_evals * self.steps_per_eval

    @property
    def updates_per_run(self) -> int:
        return self.num_evals * self.iters_per_eval * self.updates_per_train


@struct.dataclass
class DQNHParams:
    """DQN hyperparameters: numbers, vmappable (leaves of shape [] or [H]).

    Target updates: every ``target_period`` updates, θ⁻ ← (1 − τ)·θ⁻ + τ·θ. Hard updates are
    τ = 1 with a period; Polyak averaging is τ < 1 with period 1 — both in one compiled sweep.
    """

    lr: float = hparams.field(1e-3, low=0, low_open=True, help="Adam learning rate")
    gamma: float = hparams.field(0.99, low=0, high=1, help="discount γ")
    eps_start: float = hparams.field(1.0, low=0, high=1, help="initial ε")
    eps_end: float = hparams.field(0.05, low=0, high=1, help="final ε")
    eps_decay_fraction: float = hparams.field(
        0.2, low=0, high=1, help="fraction of total_steps over which ε decays linearly"
    )
    target_tau: float = hparams.field(
        0.02, low=0, high=1, low_open=True, help="target update rate τ"
    )
    target_period: int = hparams.field(
        1, low=1, integer=True, help="gradient updates between target updates"
    )
    huber_delta: float = hparams.field(
        1.0,
        low=0,
        low_open=True,
        help="Huber threshold κ (huber and munchausen losses; the quantile Huber loss of qr "
        "and iqn uses L_κ(u) not divided by κ, as QR-DQN and rlax, where IQN's paper and "
        "Dopamine divide by κ: the same at κ = 1)",
    )
    max_grad_norm: float = hparams.field(
        10.0, low=0, low_open=True, help="global-norm gradient clipping (inf: none)"
    )
    loss_index: int = hparams.field(
        0, low=0, integer=True, help="which loss of a tuple config.loss to train with"
    )
    v_min: float = hparams.field(-10.0, help="lowest value of a categorical/histogram head")
    v_max: float = hparams.field(
        10.0, help="highest value of a categorical/histogram head (> v_min)"
    )
    hl_gauss_sigma: float = hparams.field(
        0.75, low=0, low_open=True, help="σ of the HL-Gauss labels, in bin widths"
    )
    dqn_reg_weight: float = hparams.field(
        0.1, low=0, help="weight of the value penalty of the dqn_reg loss"
    )
    munchausen_tau: float = hparams.field(
        0.03, low=0, low_open=True, help="munchausen loss: softmax temperature τ"
    )
    munchausen_alpha: float = hparams.field(
        0.9, low=0, high=1, help="munchausen loss: weight α of the scaled log-policy bonus"
    )
    munchausen_clip: float = hparams.field(
        -1.0, high=0, help="munchausen loss: log π is clipped to [l₀, 0]"
    )
    per_alpha: float = hparams.field(
        0.6, low=0, help="prioritised replay: P(i) ∝ p_iᵅ (0: uniform)"
    )
    per_beta: float = hparams.field(
        0.4,
        low=0,
        high=1,
        help="prioritised replay: importance-sampling exponent β at the start, annealed "
        "linearly to 1 over total_steps",
    )
    per_eps: float = hparams.field(
        1e-6,
        low=0,
        low_open=True,
        help="prioritised replay: p_i = ℓ_i + ε, ℓ_i the loss's aux['priority']: |δ_i| for "
        "huber, mse, residual, dqn_reg, munchausen; the sample's cross-entropy for c51, "
        "hl_gauss, two_hot; its quantile Huber loss for qr, iqn",
    )
    coverage: float = hparams.field(
        0.5,
        low=0,
        high=1,
        help="coverage replay: the fraction of each batch drawn from the model at (s, a) "
        "uniform over the reachable pairs (1: all of it)",
    )
    noisy_sigma0: float = hparams.field(
        0.5, low=0, help="noisy layers: σ = σ₀/√fan_in at initialisation (Fortunato et al.)"
    )


@struct.dataclass
class DQNState:
    """Everything a run carries from one step to the next."""

    params: Params
    target_params: Params
    opt_state: optax.OptState
    buffer: replay.ReplayBuffer
    env_state: Any
    obs: jax.Array
    key: jax.Array
    env_steps: jax.Array
    updates: jax.Array
    episodes: rollout.EpisodeStats
    visits: jax.Array | None = None
    """[S, A] state-action visit counts (finite MDPs only)."""
    replayed: jax.Array | None = None
    """[S, A] the loss weights of the current (or last) interval's replayed samples, summed
    per (s, a): 1 each for uniform replay, the importance weight for prioritised (finite MDPs
    only)."""
    window: Transition | None = None
    """the last ``n_step`` one-step transitions, leaves [n, N, ...] (n-step returns only)."""


def make_optimizer(hp: DQNHParams) -> optax.GradientTransformation:
    """Adam after global-norm clipping, with (possibly traced) numbers from ``hp``."""
    return optax.chain(optax.clip_by_global_norm(hp.max_grad_norm), optax.adam(hp.lr))


def gradient_step(
    q_fn: QFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    target_params: Params,
    opt_state: optax.OptState,
    batch: Transition,
    hp: Any,
    noise: tuple[Any, Any] | None = None,
) -> tuple[Params, optax.OptState, dict[str, jax.Array]]:
    """One optimiser step on ``loss_fn``'s gradient with respect to the online params.

    ``noise``: (online, target) noise collections of a noisy network
    (:func:`qlearn.networks.sample_noise`), applied beside ``params`` and ``target_params``;
    the loss sees the noisy networks' variables, the gradient is the parameters' only.
    Returns (new params, new optimiser state, {"loss": ..., **aux}).
    """
    online_noise, target_noise = (None, None) if noise is None else noise
    bootstrap = networks.with_noise(target_params, target_noise)

    def objective(p: Params) -> tuple[jax.Array, dict[str, jax.Array]]:
        return loss_fn(q_fn, networks.with_noise(p, online_noise), bootstrap, batch, hp)

    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss, **aux}


def update_target(params: Params, target_params: Params, updates: jax.Array, hp: Any) -> Params:
    """θ⁻ ← (1 − τ)θ⁻ + τθ when ``updates`` is a multiple of ``target_period``."""
    blended = optax.incremental_update(params, target_params, hp.target_tau)
    return optax.periodic_update(blended, target_params, updates, hp.target_period)


def make_train(
    config: DQNConfig, *, progress: deep_q.ProgressFn | None = None
) -> Callable[[jax.Array, DQNHParams], tuple[DQNState, dict[str, jax.Array]]]:
    """Build the pure training function of ``config``: ``init`` then every evaluation
    interval (see :func:`make_stages`).

    Args:
      config: the static configuration.
      progress: optional host callback, called once per evaluation interval and run with
        (env steps in the interval, greedy return); None compiles no callback at all.

    Returns:
      ``train(key, hparams) -> (final_state, metrics)``; every metric has shape [num_evals]:
      env_steps, eval_return (greedy, ε = 0), train_return (mean over episodes completed in the
      interval, NaN if none), train_episodes, epsilon, loss, q_mean, target_mean, td_abs
      (means over the interval's updates), q_abs_max (max), diverged (NaN/inf or |Q| above
      ``divergence_bound`` in the interval); on a finite MDP also the true errors of
      :func:`qlearn.dp.error_metrics` (ve_behaviour, ve_empirical, greedy_value, greedy_return,
      and for the interval's replayed batches ve_replayed and replay_tv), with a
      categorical or quantile head and ``n_step`` = 1 return_cramer or return_w1
      (:func:`ground_truth`), and
      with noisy layers noise_sigma (the mean |σ| of their noise,
      :func:`qlearn.networks.mean_noise_scale`).
    """
    init, run_intervals = make_stages(config, progress=progress)

    def train(key: jax.Array, hp: DQNHParams) -> tuple[DQNState, dict[str, jax.Array]]:
        return run_intervals(key, hp, init(key, hp), jnp.int32(0), config.num_evals)

    return train


def make_stages(
    config: DQNConfig, *, progress: deep_q.ProgressFn | None = None
) -> tuple[Callable, Callable]:
    """The two stages of a run, so that a long run can stop and resume at evaluation points
    (:mod:`qlearn.checkpoint`):

    ``init(key, hp) -> state``: parameters, optimiser, envs, and the warm-up steps that fill
    the replay buffer (:func:`init`);
    ``run_intervals(key, hp, state, first, count) -> (state, metrics)``: evaluation intervals
    ``first .. first + count - 1`` (``count`` static; metrics [count]; :func:`run_intervals`).
    ``train`` is ``run_intervals(key, hp, init(key, hp), 0, num_evals)``, and running the
    intervals in several calls gives the same numbers.
    """
    loss_fn = losses.resolve(config.loss, **config.loss_options)
    prog = deep_q.program(
        config, loss_fn, progress, config.value_head, config.noisy, config.iqn_action_quantiles
    )
    return functools.partial(init, prog), functools.partial(run_intervals, prog)


def initial_state(prog: deep_q.Program, key: jax.Array, hp: DQNHParams) -> DQNState:
    """The state before the first env step: fresh parameters (θ⁻ = θ), optimiser, envs, an
    empty replay buffer (and n-step window, visit counts where they apply)."""
    config, env_params = prog.config, prog.env_params
    num_envs = config.num_envs
    k_init, k_reset, k_loop, _ = jax.random.split(key, 4)
    params, _ = networks.split_variables(prog.network.init(k_init, jnp.zeros((1, *prog.obs_shape))))
    if prog.noise is not None:
        params = networks.scale_noise(params, hp.noisy_sigma0)
    obs, env_state = rollout.reset_envs(prog.env, env_params, k_reset, num_envs)
    masks = envs.action_masks(prog.env, env_params, env_state)
    finite = envs.is_finite(config.env_id)
    example = Transition(
        obs=obs[0],
        action=jnp.int32(0),
        reward=jnp.float32(0),
        next_obs=obs[0],
        terminated=jnp.bool_(False),
        truncated=jnp.bool_(False),
        steps=jnp.int32(1),
        next_action_mask=None if masks is None else masks[0],
        state_index=jnp.int32(0) if finite else None,
    )
    window = None
    if config.n_step > 1:  # the last n one-step transitions of each env, oldest first
        window = jax.tree.map(
            lambda x: jnp.zeros((config.n_step, num_envs, *x.shape), x.dtype), example
        )
    return DQNState(
        params=params,
        target_params=params,
        opt_state=make_optimizer(hp).init(params),
        buffer=replay.init(
            example,
            config.buffer_size,
            prioritized=config.replay == "prioritized",
            track_min=config.per_normalise == "buffer",
        ),
        env_state=env_state,
        obs=obs,
        key=k_loop,
        env_steps=jnp.zeros((), jnp.int32),
        updates=jnp.zeros((), jnp.int32),
        episodes=rollout.init_episode_stats(num_envs),
        visits=jnp.zeros(env_params.rewards.shape) if finite else None,
        replayed=jnp.zeros(env_params.rewards.shape) if finite else None,
        window=window,
    )


def init(prog: deep_q.Program, key: jax.Array, hp: DQNHParams) -> DQNState:
    """:func:`initial_state`, then the ``learning_starts`` warm-up env steps."""
    hp = hparams.to_arrays(hp)
    state = initial_state(prog, key, hp)
    steps = prog.config._warmup_vector_steps
    state, _ = jax.lax.scan(functools.partial(env_step, prog, hp), state, length=steps)
    # the first interval's train_return / train_episodes cover its own episodes only
    return state.replace(episodes=rollout.clear_completed(state.episodes))


def env_step(
    prog: deep_q.Program, hp: DQNHParams, state: DQNState, _: Any = None
) -> tuple[DQNState, None]:
    """One ε-greedy step of the N envs, its transitions stored in the replay buffer (as
    n-step transitions when ``n_step > 1``, once the window is full)."""
    config, num_envs = prog.config, prog.num_envs
    epsilon = deep_q.epsilon_schedule(config, hp)(state.env_steps)
    key, action, obs, env_state, tr = deep_q.explore_step(prog, hp, state, epsilon)
    state = state.replace(key=key)
    if state.visits is not None:  # count the visits for the empirical VE; store s
        state = state.replace(visits=state.visits.at[state.env_state.state, action].add(1.0))
        tr = tr.replace(state_index=state.env_state.state)
    if config.n_step > 1:  # store the n-step transition of the step n − 1 ago
        window = jax.tree.map(lambda w, x: jnp.concatenate([w[1:], x[None]]), state.window, tr)
        full = state.env_steps >= (config.n_step - 1) * num_envs
        item = replay.n_step_transition(window, hp.gamma)
        buffer = replay.add(state.buffer, item, valid=full)
        state = state.replace(window=window)
    else:
        buffer = replay.add(state.buffer, tr)
    state = state.replace(
        obs=obs,
        env_state=env_state,
        buffer=buffer,
        episodes=rollout.record(state.episodes, tr.reward, tr.terminated | tr.truncated),
        env_steps=state.env_steps + num_envs,
    )
    return state, None


def update(
    prog: deep_q.Program,
    hp: DQNHParams,
    truth: dict[str, jax.Array],
    state: DQNState,
    xs: dict[str, jax.Array],
) -> tuple[DQNState, dict[str, jax.Array]]:
    """One gradient update on the replay batch that the words ``xs["words"]`` [B, words per
    sample] pick (prioritised: with β annealed from ``per_beta`` to 1 over the run, the
    weights normalised as ``per_normalise`` says, then the batch's priorities set from the
    loss's ``aux["priority"]``), then the target update. An
    ``iqn`` head's ``xs["loss_key"]`` is the batch's ``key`` (the loss's τ); a noisy
    network's ``xs["noise_key"]`` draws the online and the target network's noise; coverage
    replay's ``xs["model_key"]`` draws the model's samples (:func:`coverage_batch`) over the
    pairs ``truth["reachable"]``."""
    config = prog.config
    words, loss_key = xs["words"], xs.get("loss_key")
    noise = None
    if "noise_key" in xs:
        k_online, k_target = jax.random.split(xs["noise_key"])
        noise = (
            networks.sample_noise(prog.noise, k_online),
            networks.sample_noise(prog.noise, k_target),
        )
    buffer = state.buffer
    if buffer.priorities is None:
        batch = replay.sample(buffer, words)
        if "model_key" in xs:
            batch = coverage_batch(prog, hp, truth["reachable"], batch, xs["model_key"])
    else:
        beta = policies.linear_schedule(state.env_steps, hp.per_beta, 1.0, config.total_steps)
        batch, idx = replay.sample_prioritized(buffer, words, beta, config.per_normalise)
    if loss_key is not None:
        batch = batch.replace(key=loss_key)
    bootstrap_params = state.target_params if config.target_network else state.params
    params, opt_state, m = gradient_step(
        prog.q_function(hp),
        prog.loss,
        make_optimizer(hp),
        state.params,
        bootstrap_params,
        state.opt_state,
        batch,
        hp,
        noise,
    )
    priority = m.pop("priority", None)  # per sample: not a metric
    if buffer.priorities is not None:
        if priority is None:
            raise ConfigError(
                "config.replay = 'prioritized' needs a loss that reports aux['priority'] [B], "
                "each sample's new priority (the built-in losses do); this one does not"
            )
        buffer = replay.update_priorities(buffer, idx, priority, hp.per_alpha, hp.per_eps)
    replayed = state.replayed
    if replayed is not None:  # the weight this batch's loss puts on each (s, a)
        weight = jnp.ones(batch.action.shape) if batch.weight is None else batch.weight
        replayed = replayed.at[batch.state_index, batch.action].add(weight)
    updates = state.updates + 1
    target_params = (
        update_target(params, state.target_params, updates, hp)
        if config.target_network
        else state.target_params
    )
    state = state.replace(
        params=params,
        target_params=target_params,
        opt_state=opt_state,
        updates=updates,
        buffer=buffer,
        replayed=replayed,
    )
    return state, m


def coverage_batch(
    prog: deep_q.Program,
    hp: DQNHParams,
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


def iteration(
    prog: deep_q.Program,
    hp: DQNHParams,
    truth: dict[str, jax.Array],
    state: DQNState,
    _: Any = None,
) -> tuple[DQNState, dict[str, jax.Array]]:
    """``train_every`` env steps, then ``updates_per_train`` updates (metrics [updates])."""
    config = prog.config
    state, _ = jax.lax.scan(functools.partial(env_step, prog, hp), state, length=config.train_every)
    key, k_sample = jax.random.split(state.key)
    shape = (config.updates_per_train, config.batch_size, replay.words_per_sample(state.buffer))
    xs = {"words": jax.random.bits(k_sample, shape, jnp.uint32)}
    # keys per update split off only where they are used, so no other random stream moves
    if prog.head.kind == "iqn":  # the loss's τ
        key, k_loss = jax.random.split(key)
        xs["loss_key"] = jax.random.split(k_loss, config.updates_per_train)
    if prog.noise is not None:  # the networks' noise
        key, k_noise = jax.random.split(key)
        xs["noise_key"] = jax.random.split(k_noise, config.updates_per_train)
    if config.replay == "coverage":  # the model's samples
        key, k_model = jax.random.split(key)
        xs["model_key"] = jax.random.split(k_model, config.updates_per_train)
    return jax.lax.scan(functools.partial(update, prog, hp, truth), state.replace(key=key), xs)


def interval(
    prog: deep_q.Program,
    key: jax.Array,
    hp: DQNHParams,
    truth: dict[str, jax.Array],
    state: DQNState,
    xs: tuple[jax.Array, jax.Array],
) -> tuple[DQNState, dict[str, jax.Array]]:
    """One evaluation interval of the run of ``key``: ``iters_per_eval`` iterations, then the
    greedy evaluation with key ``xs[0]`` and the metrics, reported (:func:`deep_q.report`);
    on a finite MDP also the true errors against ``truth["q_star"]`` and, for a categorical
    or quantile head, the distance of the learned return distributions to ``truth["eta"]``
    (:func:`ground_truth`). ``xs[1]`` is the interval's index (the first one counts the
    warm-up steps). (An iqn head is measured at its midpoints τ̂, as a quantile head.)"""
    config = prog.config
    k_eval_i, index = xs
    steps_before = jnp.where(index == 0, 0, state.env_steps)  # first: count warm-up
    if state.replayed is not None:  # this interval's replayed weights only
        state = state.replace(replayed=jnp.zeros_like(state.replayed))
    state, m = jax.lax.scan(
        functools.partial(iteration, prog, hp, truth), state, length=config.iters_per_eval
    )
    eval_return, metrics = deep_q.evaluate_interval(prog, hp, state, k_eval_i, m)
    if prog.noise is not None:
        metrics["noise_sigma"] = networks.mean_noise_scale(state.params)
    if truth:
        mdp, q_fn = prog.env_params, prog.q_function(hp)
        q_all = q_fn(state.params, mdp.features)  # every state, [S, A]
        epsilon = deep_q.epsilon_schedule(config, hp)(state.env_steps)
        behaviour = policies.epsilon_greedy_probs(q_all, epsilon, mdp.action_mask)
        mu = dp.state_action_distribution(mdp, behaviour)
        metrics |= dp.error_metrics(
            mdp, q_all, truth["q_star"], behaviour, state.visits, hp.gamma, state.replayed, mu
        )
        if "eta" in truth:
            learned = q_fn.outputs(state.params, mdp.features)  # [S, A, K]
            metrics |= rd.distance_metrics(prog.head.kind, learned, truth["eta"], mu, q_fn.support)
    deep_q.report(prog, key, hp, index, state.env_steps - steps_before, eval_return, metrics)
    state = state.replace(episodes=rollout.clear_completed(state.episodes))
    return state, metrics


def ground_truth(prog: deep_q.Program, hp: DQNHParams) -> dict[str, jax.Array]:
    """What a finite MDP's model gives (empty elsewhere): ``q_star`` [S, A] by value
    iteration, ``reachable`` [S, A] (:func:`qlearn.dp.reachable_pairs`), and for a categorical
    or quantile head ``eta`` [S, A, K], the fixed point of the projected distributional
    Bellman operator of the greedy policy of q*
    (:mod:`qlearn.return_distributions`) — the return distributions a distributional
    Q-learner converges to at best — where rewards are deterministic given (s, a, s').

    The projection is the learner's: C51's onto the head's atoms; for a quantile or iqn head
    the κ-Huber quantiles at the midpoints, κ = ``hp.huber_delta`` as in the built-in ``qr``
    and ``iqn`` losses (an iqn head is graded at its midpoints against this N-atom fixed
    point, not against the fixed point of its continuum of levels). No ``eta`` when
    ``n_step`` > 1: an n-step target bootstraps after n − 1 behaviour (ε-greedy) actions,
    uncorrected, so its fixed point Π T_b^(n−1) T^π depends on the behaviour policy b, which
    moves with ε and the learned Q and is mixed over the replay's ages; the model alone gives
    no truth to grade it against."""
    if not envs.is_finite(prog.config.env_id):
        return {}
    mdp = prog.env_params
    q_star = dp.value_iteration(mdp, hp.gamma)[0]
    truth = {"q_star": q_star, "reachable": dp.reachable_pairs(mdp)}
    distributional = prog.head.kind in ("categorical", "quantile", "iqn")
    if distributional and prog.config.n_step == 1 and rd.has_deterministic_rewards(mdp):
        greedy = dp.greedy_policy(q_star, mdp.action_mask)
        if prog.head.kind == "categorical":
            support = prog.q_function(hp).support
            truth["eta"] = rd.categorical_fixed_point(mdp, greedy, hp.gamma, support)
        else:
            truth["eta"] = rd.quantile_fixed_point(
                mdp, greedy, hp.gamma, prog.head.size, kappa=hp.huber_delta
            )
    return truth


def run_intervals(
    prog: deep_q.Program,
    key: jax.Array,
    hp: DQNHParams,
    state: DQNState,
    first: jax.Array,
    count: int,
) -> tuple[DQNState, dict[str, jax.Array]]:
    """Evaluation intervals ``first .. first + count - 1`` of the run of ``key`` (metrics
    [count]); the evaluation keys are the run's, whichever call runs an interval."""
    hp = hparams.to_arrays(hp)
    k_eval = jax.random.split(key, 4)[3]
    index = first + jnp.arange(count)
    eval_keys = jax.random.split(k_eval, prog.config.num_evals)[index]
    body = functools.partial(interval, prog, key, hp, ground_truth(prog, hp))
    return jax.lax.scan(body, state, (eval_keys, index))


def legacy_config(config: dict[str, Any]) -> dict[str, Any]:
    """For a stored config (JSON form) written before a field whose default would change the
    program it names (:attr:`~qlearn.algos.algorithm.Algorithm.legacy_config`): before
    ``munchausen_next_policy`` existed, ``loss=munchausen`` took π′ from the online network
    exactly when ``double_q`` was on, so such a config gets 'online' there, else 'target'."""
    if "munchausen_next_policy" in config:
        return {}
    loss = config.get("loss", "huber")
    names = loss if isinstance(loss, list | tuple) else [loss]
    online = "munchausen" in names and bool(config.get("double_q", True))
    return {"munchausen_next_policy": "online" if online else "target"}


ALGORITHM = deep_q.algorithm(
    name="dqn",
    config=DQNConfig,
    hparams=DQNHParams,
    make_train=make_train,
    validate_hparams=DQNConfig.validate_hparams,
    make_stages=make_stages,
    legacy_config=legacy_config,
)
