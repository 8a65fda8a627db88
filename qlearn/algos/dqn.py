"""DQN (Mnih et al. 2015) with the semi-gradient TD loss, Double-Q and Polyak or periodic
target updates: ``make_train(config) -> train(key, hparams) -> (final_state, metrics)``.

``config`` (:class:`DQNConfig`) is static: it fixes array shapes and program structure.
``hparams`` (:class:`DQNHParams`) is a pytree of numbers, so::

    train = make_train(DQNConfig())
    run = jax.jit(jax.vmap(jax.vmap(train, (0, None)), (None, 0)))
    final_state, metrics = run(seed_keys, hparam_batch)      # metrics[k]: [H, S, T]

runs every hyperparameter configuration × seed in ONE compiled program. A run is a warm-up of
``learning_starts`` env steps, then ``num_evals`` equal intervals of iterations (``train_every``
steps of the ``num_envs`` envs, then ``updates_per_train`` updates on replay batches), each
ending in a greedy evaluation (:mod:`qlearn.algos.driver`): metrics have T = ``num_evals``.

With ``core`` 'gru' or 'lstm' the network carries a memory and DQN becomes R2D2-style
(Kapturowski et al. 2019): sequences replayed with their stored carry and a burn-in
(:mod:`qlearn.algos.sequence_source`); :data:`R2D2` and :data:`R2D2_HPARAMS` hold the paper's
settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from flax import struct

from qlearn import envs, heads, hparams, losses, noisynet, recurrent
from qlearn.algos import (
    dataset_source,
    deep_q,
    driver,
    learners,
    probes,
    replay_source,
    sequence_source,
)
from qlearn.losses import LossRecord
from qlearn.types import LossFn, config_field, table_field


@dataclasses.dataclass(frozen=True)
class DQNConfig(deep_q.DeepQConfig):
    """Static configuration of a DQN run: everything that changes shapes or program structure.

    Hashable and immutable; validated on construction (a bad value raises
    :class:`~qlearn.types.ConfigError` naming the field).
    """

    num_envs: int = table_field(deep_q.SHARED_FIELDS, "num_envs")
    total_steps: int = table_field(deep_q.SHARED_FIELDS, "total_steps")
    learning_starts: int = table_field(replay_source.REPLAY_FIELDS, "learning_starts")
    buffer_size: int = table_field(replay_source.REPLAY_FIELDS, "buffer_size")
    batch_size: int = table_field(replay_source.REPLAY_FIELDS, "batch_size")
    train_every: int = table_field(replay_source.REPLAY_FIELDS, "train_every")
    n_step: int = table_field(replay_source.REPLAY_FIELDS, "n_step")
    updates_per_train: int = table_field(replay_source.REPLAY_FIELDS, "updates_per_train")
    replay_ratio: float | None = table_field(replay_source.REPLAY_FIELDS, "replay_ratio")
    network: str = config_field(
        "mlp", "'linear' (no bias: tabular on one-hot observations), " + deep_q.NETWORKS_HELP
    )
    hidden_sizes: tuple[int, ...] = table_field(deep_q.SHARED_FIELDS, "hidden_sizes")
    core: str = table_field(recurrent.FIELDS, "core")
    memory_size: int = table_field(recurrent.FIELDS, "memory_size")
    sequence_length: int = table_field(sequence_source.SEQUENCE_FIELDS, "sequence_length")
    burn_in: int = table_field(sequence_source.SEQUENCE_FIELDS, "burn_in")
    sequence_overlap: int = table_field(sequence_source.SEQUENCE_FIELDS, "sequence_overlap")
    activation: str = table_field(deep_q.SHARED_FIELDS, "activation")
    layer_norm: bool = table_field(deep_q.SHARED_FIELDS, "layer_norm")
    target_network: bool = table_field(learners.TD_FIELDS, "target_network")
    double_q: bool = table_field(learners.TD_FIELDS, "double_q")
    head: str = table_field(heads.FIELDS, "head")
    dueling: bool = table_field(heads.FIELDS, "dueling")
    noisy: bool = table_field(noisynet.NOISY_FIELDS, "noisy")
    num_atoms: int = table_field(heads.FIELDS, "num_atoms")
    num_quantiles: int = table_field(heads.FIELDS, "num_quantiles")
    iqn_target_quantiles: int | None = table_field(heads.FIELDS, "iqn_target_quantiles")
    iqn_action_quantiles: int | None = table_field(heads.FIELDS, "iqn_action_quantiles")
    iqn_shared_levels: bool = table_field(heads.FIELDS, "iqn_shared_levels")
    loss: str | LossFn | LossRecord | tuple[str | LossFn | LossRecord, ...] = config_field(
        "huber", losses.registry.help_text("transition")
    )
    munchausen_next_policy: str = table_field(losses.OPTION_FIELDS, "munchausen_next_policy")
    value_rescaling: bool = table_field(losses.OPTION_FIELDS, "value_rescaling")
    replay: str = table_field(replay_source.REPLAY_FIELDS, "replay")
    per_normalise: str = table_field(replay_source.REPLAY_FIELDS, "per_normalise")
    num_evals: int = table_field(deep_q.SHARED_FIELDS, "num_evals")
    eval_episodes: int = table_field(deep_q.SHARED_FIELDS, "eval_episodes")
    divergence_bound: float = table_field(deep_q.SHARED_FIELDS, "divergence_bound")
    diagnostics: bool = table_field(probes.DIAGNOSTIC_FIELDS, "diagnostics")
    diagnostics_batch: int = table_field(probes.DIAGNOSTIC_FIELDS, "diagnostics_batch")
    custom_diagnostics: tuple[str | Callable, ...] = table_field(
        probes.DIAGNOSTIC_FIELDS, "custom_diagnostics"
    )
    intervention: str = table_field(learners.INTERVENTION_FIELDS, "intervention")
    reset_layers: int = table_field(learners.INTERVENTION_FIELDS, "reset_layers")
    dataset: str = table_field(dataset_source.START_FIELDS, "dataset")
    offline_updates: int = table_field(dataset_source.START_FIELDS, "offline_updates")
    cal_ql: bool = table_field(dataset_source.START_FIELDS, "cal_ql")

    def validate_hparams(self, hp: DQNHParams) -> None:
        """Checks of hyperparameters against this config (before anything compiles):
        :func:`~qlearn.algos.deep_q.check_replay_hparams`, and those that need a dataset
        (:func:`~qlearn.algos.dataset_source.check_start_hparams`)."""
        deep_q.check_replay_hparams(self, hp)
        dataset_source.check_start_hparams(self, hp)

    def _validate(self) -> None:
        heads.check_config(self)
        deep_q.check_shared(self, self.value_head, self.noisy)
        replay_source.check_replay_config(self)
        if self.core != "none":
            sequence_source.check_sequence_config(self)
        losses.check_config(self, masks_actions=deep_q.masks_actions(self))
        probes.check_diagnostics(self, self.updates_per_run // self.num_evals, self.batch_size)
        learners.check_intervention(self)
        dataset_source.check_start_config(self)

    @property
    def loss_options(self) -> dict[str, Any]:
        """The keywords of :func:`qlearn.losses.resolve` this config gives."""
        return deep_q.replay_loss_options(self)

    @property
    def value_head(self) -> heads.Head:
        """The Q-network's :class:`~qlearn.heads.Head` (:func:`qlearn.heads.of_config`)."""
        return heads.of_config(self)

    @property
    def iters_per_eval(self) -> int:
        """Iterations (:func:`~qlearn.algos.replay_source.schedule`) per interval."""
        vector_steps = self.total_steps // self.num_envs - replay_source.warmup_steps(self)
        return vector_steps // replay_source.schedule(self).train_every // self.num_evals

    @property
    def steps_per_eval(self) -> int:
        """Env steps per evaluation interval (after warm-up)."""
        return self.iters_per_eval * replay_source.schedule(self).train_every * self.num_envs

    @property
    def actual_total_steps(self) -> int:
        """Env steps a run really takes: ``total_steps`` rounded down to whole intervals."""
        return (
            replay_source.warmup_steps(self) * self.num_envs + self.num_evals * self.steps_per_eval
        )

    @property
    def updates_per_run(self) -> int:
        return self.num_evals * self.iters_per_eval * replay_source.schedule(self).updates_per_train


@struct.dataclass
class DQNHParams:
    """DQN hyperparameters: numbers, vmappable (leaves of shape [] or [H]).

    Target updates: every ``target_period`` updates, θ⁻ ← (1 − τ)·θ⁻ + τ·θ. Hard updates are
    τ = 1 with a period; Polyak averaging is τ < 1 with period 1 — both in one compiled sweep.
    """

    lr: float = hparams.table_field(deep_q.SHARED_HPARAMS, "lr")
    gamma: float = hparams.table_field(deep_q.SHARED_HPARAMS, "gamma")
    eps_start: float = hparams.table_field(deep_q.SHARED_HPARAMS, "eps_start")
    eps_end: float = hparams.table_field(deep_q.SHARED_HPARAMS, "eps_end")
    eps_decay_fraction: float = hparams.table_field(deep_q.SHARED_HPARAMS, "eps_decay_fraction")
    target_tau: float = hparams.table_field(learners.TD_HPARAMS, "target_tau")
    target_period: int = hparams.table_field(learners.TD_HPARAMS, "target_period")
    huber_delta: float = hparams.table_field(
        deep_q.SHARED_HPARAMS,
        "huber_delta",
        help="Huber threshold κ (huber and munchausen losses; the quantile Huber loss of qr "
        "and iqn uses L_κ(u) not divided by κ, as QR-DQN and rlax, where IQN's paper and "
        "Dopamine divide by κ: the same at κ = 1)",
    )
    max_grad_norm: float = hparams.table_field(deep_q.SHARED_HPARAMS, "max_grad_norm")
    loss_index: int = hparams.table_field(deep_q.SHARED_HPARAMS, "loss_index")
    v_min: float = hparams.table_field(heads.HPARAMS, "v_min")
    v_max: float = hparams.table_field(heads.HPARAMS, "v_max")
    hl_gauss_sigma: float = hparams.table_field(losses.HPARAMS, "hl_gauss_sigma")
    dqn_reg_weight: float = hparams.table_field(losses.HPARAMS, "dqn_reg_weight")
    munchausen_tau: float = hparams.table_field(losses.HPARAMS, "munchausen_tau")
    munchausen_alpha: float = hparams.table_field(losses.HPARAMS, "munchausen_alpha")
    munchausen_clip: float = hparams.table_field(losses.HPARAMS, "munchausen_clip")
    per_alpha: float = hparams.table_field(replay_source.REPLAY_HPARAMS, "per_alpha")
    per_beta: float = hparams.table_field(replay_source.REPLAY_HPARAMS, "per_beta")
    per_eps: float = hparams.table_field(replay_source.REPLAY_HPARAMS, "per_eps")
    per_eta: float = hparams.table_field(sequence_source.SEQUENCE_HPARAMS, "per_eta")
    coverage: float = hparams.table_field(replay_source.REPLAY_HPARAMS, "coverage")
    dataset_fraction: float = hparams.table_field(replay_source.REPLAY_HPARAMS, "dataset_fraction")
    cql_alpha: float = hparams.table_field(losses.HPARAMS, "cql_alpha")
    online_cql_alpha: float = hparams.table_field(replay_source.REPLAY_HPARAMS, "online_cql_alpha")
    dr3_weight: float = hparams.table_field(losses.HPARAMS, "dr3_weight")
    noisy_sigma0: float = hparams.table_field(noisynet.NOISY_HPARAMS, "noisy_sigma0")
    dormant_tau: float = hparams.table_field(probes.DIAGNOSTIC_HPARAMS, "dormant_tau")
    srank_delta: float = hparams.table_field(probes.DIAGNOSTIC_HPARAMS, "srank_delta")
    intervention_period: int = hparams.table_field(
        learners.INTERVENTION_HPARAMS, "intervention_period"
    )
    shrink: float = hparams.table_field(learners.INTERVENTION_HPARAMS, "shrink")
    perturb: float = hparams.table_field(learners.INTERVENTION_HPARAMS, "perturb")


R2D2 = dict(
    core="lstm",
    memory_size=512,
    network="nature_cnn",
    dueling=True,
    batch_size=64,
    sequence_length=80,
    burn_in=40,
    sequence_overlap=40,
    n_step=5,
    value_rescaling=True,
    replay="prioritized",
)
"""Kapturowski et al. (2019)'s R2D2 settings that are config fields, for
``DQNConfig(**R2D2, env_id=...)``. Not in it: the 4M-observation replay (``buffer_size`` is the
user's to fit in memory) and the replay ratio of 256 distributed actors; each actor's fixed ε
is an ε schedule here (:data:`R2D2_HPARAMS`)."""

R2D2_HPARAMS = dict(
    lr=1e-4,
    gamma=0.997,
    per_alpha=0.9,
    per_beta=0.6,
    per_eta=0.9,
    target_tau=1.0,
    target_period=2500,
    max_grad_norm=float("inf"),
)
"""R2D2's hyperparameters (Adam 10⁻⁴, γ = 0.997, priority exponent 0.9, importance-sampling
exponent 0.6, η = 0.9, a hard target update every 2,500 updates, no gradient clipping), for
``DQNHParams(**R2D2_HPARAMS)``. Adam's ε (10⁻³ in the paper) is optax's default 10⁻⁸ here."""


def agent(config: DQNConfig, progress: deep_q.ProgressFn | None = None) -> driver.Agent:
    """DQN as the driver runs it: a replay source (a sequence source for a recurrent core), a
    TD learner with a target network (:func:`~qlearn.algos.learners.td_learner`), and the
    probes that apply (noisy layers' σ; a finite MDP's exact errors, feed-forward only; the
    diagnostics).

    With ``config.dataset`` (offline-to-online): the loss carries CQL's and DR3's penalties
    (:func:`qlearn.losses.conservative`, :func:`qlearn.losses.dr3`; weights ``cql_alpha`` in the
    offline updates and ``online_cql_alpha`` in the online ones, ``dr3_weight`` in both; 0 by
    default; ``cal_ql``: Cal-QL's calibrated penalty, floored at the dataset's returns-to-go, CQL's
    on the online samples, which keep none), the run starts with ``offline_updates`` updates on the
    dataset alone (:class:`~qlearn.algos.driver.Pretraining`: the offline learner's run of
    ``fold_in(key, 1)`` with ``total_updates = offline_updates``, in ``num_evals`` iterations), and
    each replay batch takes a fraction ``dataset_fraction`` of its samples from the dataset
    (:func:`~qlearn.algos.replay_source.dataset_batch`)."""
    loss_fn = losses.resolve(config.loss, **config.loss_options)
    if config.dataset:
        loss_fn = losses.conservative(losses.dr3(loss_fn), config.cal_ql)
    prog = deep_q.program(
        config, loss_fn, progress, config.value_head, config.noisy, config.iqn_action_quantiles
    )
    finite = envs.is_finite(config.env_id)
    data = None
    if config.dataset:
        data = dataset_source.constants(dataset_source.dataset_of(config.dataset), config.cal_ql)

    def build(hp: DQNHParams) -> driver.Parts:
        measured = (probes.noise_probe(),) if config.noisy else ()
        if prog.recurrent:  # q̂ depends on the history, not on a state: no per-state errors
            source = sequence_source.sequence_source(prog, hp)
        else:
            truth = probes.ground_truth(prog, hp)
            source = replay_source.replay_source(
                prog, hp, record_states=finite, reachable=truth.get("reachable"), dataset=data
            )
            if finite:
                measured += (probes.finite_mdp_probe(prog, hp, truth, config.diagnostics),)
        online_hp = hp.replace(cql_alpha=hp.online_cql_alpha) if config.dataset else hp
        td = learners.td_learner(prog, online_hp, config.target_network)
        learner = learners.with_intervention(td, prog, hp)
        pretraining = None
        if config.offline_updates:
            per_iteration = config.offline_updates // config.num_evals
            offline = dataset_source.dataset_source(
                prog, hp, *data, per_iteration, config.offline_updates
            )
            offline_td = learners.td_learner(prog, hp, config.target_network)
            pretraining = driver.Pretraining(offline, offline_td, config.num_evals)
        diagnosed = probes.diagnosed(prog, hp, source, td)
        return driver.Parts(source, learner, measured + diagnosed, pretraining)

    return driver.Agent(prog, build, config.iters_per_eval)


def make_train(
    config: DQNConfig, *, progress: deep_q.ProgressFn | None = None
) -> Callable[[jax.Array, DQNHParams], tuple[driver.RunState, dict[str, jax.Array]]]:
    """Build the pure training function of ``config`` (:func:`qlearn.algos.driver.make_train`
    of :func:`agent`); ``progress``: a host callback called once per evaluation interval and
    run with (env steps in the interval, greedy return), or None (no callback compiled).

    Returns:
      ``train(key, hparams) -> (final_state, metrics)``; every metric has shape [num_evals]:
      those of :func:`qlearn.algos.evaluation.evaluate_interval` (returns, ε, the loss's metrics,
      diverged), and the probes' (a finite MDP's true errors, noisy layers' noise_sigma, the
      diagnostics); the table of them is in docs/algorithms/dqn.md.
    """
    return driver.make_train(agent(config, progress))


def make_stages(
    config: DQNConfig, *, progress: deep_q.ProgressFn | None = None
) -> tuple[Callable, Callable]:
    """``(init, run_intervals)``: resumable ``train`` (:func:`qlearn.algos.driver.make_stages`)."""
    return driver.make_stages(agent(config, progress))


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
    "transition",
    name="dqn",
    config=DQNConfig,
    hparams=DQNHParams,
    make_train=make_train,
    validate_hparams=DQNConfig.validate_hparams,
    make_stages=make_stages,
    legacy_config=legacy_config,
)
