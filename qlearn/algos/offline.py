"""Offline Q-learning: DQN's learner on a fixed dataset (:mod:`qlearn.datasets`), with CQL's
conservative penalty (Kumar et al. 2020) and behaviour cloning — and, on a finite MDP, the
exact errors of the learned values split by how well the data cover each (s, a).

``make_train(OfflineConfig(dataset=path, env_id=...)) -> train(key, hparams)`` like DQN's: the
driver (:mod:`qlearn.algos.driver`) runs a **dataset source** (:mod:`qlearn.algos.
dataset_source`: batches drawn from the dataset, no env stepped) and DQN's TD learner
(:func:`qlearn.algos.learners.td_learner`, any replay loss and head, its target network), the
loss wrapped in CQL(H)'s penalty weighted by the hyperparameter ``cql_alpha``
(:func:`qlearn.losses.conservative`; ``cal_ql``: Cal-QL's calibrated penalty; α = 0, the
default, is offline DQN to the bit, so a sweep over α compares DQN and CQL in one compiled
program) and DR3's feature penalty weighted by ``dr3_weight`` (:func:`qlearn.losses.dr3`, 0 by
default). ``loss="bc"`` is behaviour cloning.

The dataset is loaded once per process and enters the compiled program as constants: every
run of a sweep — every seed, α and learning rate in its lanes — reads the same copy; none is
made per lane. Metrics have T = ``num_evals`` evaluation points, each after
``total_updates / num_evals`` updates: ``updates``, the greedy return, the loss's metrics (and
``cql_penalty``), and on a finite MDP the ground truth of :func:`offline_probe`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from qlearn import datasets, dp, envs, heads, hparams, losses, replay
from qlearn.algos import dataset_source, deep_q, driver, learners, probes, replay_source
from qlearn.algos.algorithm import Algorithm
from qlearn.algos.probes import Probe
from qlearn.losses import LossRecord
from qlearn.types import ConfigError, LossFn, config_field, table_field

OFFLINE_FIELDS: dict[str, tuple[Any, str]] = {
    "dataset": (
        "",
        "path of the dataset file (.npz of qlearn.datasets: `qlearn dataset` writes one); its "
        "observations and actions must be env_id's",
    ),
    "total_updates": (20_000, "gradient updates per run (no env steps: the data are fixed)"),
    "replay": (
        "uniform",
        "how batches are drawn from the dataset: 'uniform', or 'prioritized' (Schaul et al. "
        "2016 over the fixed data: every transition starts at priority 1, then |δ|; hparams "
        "per_alpha, per_beta annealed to 1 over total_updates, per_eps; config "
        "per_normalise)",
    ),
}
"""The static fields of an offline config (name -> (default, help))."""


@dataclasses.dataclass(frozen=True)
class OfflineConfig(deep_q.DeepQConfig):
    """Static configuration of an offline run (hashable, validated on construction: a bad
    field or a dataset that does not fit the env raises :class:`~qlearn.types.ConfigError`
    naming it)."""

    dataset: str = table_field(OFFLINE_FIELDS, "dataset")
    total_updates: int = table_field(OFFLINE_FIELDS, "total_updates")
    batch_size: int = table_field(replay_source.REPLAY_FIELDS, "batch_size")
    replay: str = table_field(OFFLINE_FIELDS, "replay")
    per_normalise: str = table_field(replay_source.REPLAY_FIELDS, "per_normalise")
    cal_ql: bool = table_field(dataset_source.START_FIELDS, "cal_ql")
    network: str = config_field(
        "mlp", "'linear' (no bias: tabular on one-hot observations), " + deep_q.NETWORKS_HELP
    )
    hidden_sizes: tuple[int, ...] = table_field(deep_q.SHARED_FIELDS, "hidden_sizes")
    activation: str = table_field(deep_q.SHARED_FIELDS, "activation")
    layer_norm: bool = table_field(deep_q.SHARED_FIELDS, "layer_norm")
    target_network: bool = table_field(learners.TD_FIELDS, "target_network")
    double_q: bool = table_field(learners.TD_FIELDS, "double_q")
    head: str = table_field(heads.FIELDS, "head")
    dueling: bool = table_field(heads.FIELDS, "dueling")
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
    num_evals: int = table_field(deep_q.SHARED_FIELDS, "num_evals")
    eval_episodes: int = table_field(deep_q.SHARED_FIELDS, "eval_episodes")
    divergence_bound: float = table_field(deep_q.SHARED_FIELDS, "divergence_bound")
    diagnostics: bool = table_field(probes.DIAGNOSTIC_FIELDS, "diagnostics")
    diagnostics_batch: int = table_field(probes.DIAGNOSTIC_FIELDS, "diagnostics_batch")
    custom_diagnostics: tuple[str | Callable, ...] = table_field(
        probes.DIAGNOSTIC_FIELDS, "custom_diagnostics"
    )

    num_envs = 1
    """One env: the offline source steps none; what the evaluation's bookkeeping holds."""

    def validate_hparams(self, hp: OfflineHParams) -> None:
        """Checks of hyperparameters against this config (before anything compiles):
        :func:`~qlearn.algos.deep_q.check_replay_hparams`, and Cal-QL's γ
        (:func:`~qlearn.algos.dataset_source.check_calibration`)."""
        deep_q.check_replay_hparams(self, hp)
        dataset_source.check_calibration(self, hp)

    def _validate(self) -> None:
        heads.check_config(self)
        deep_q.check_shared(self, self.value_head)
        deep_q.check_counts(self, ("total_updates", "batch_size"))
        if self.replay not in dataset_source.SAMPLINGS:
            samplings = ", ".join(dataset_source.SAMPLINGS)
            raise ConfigError(
                f"config.replay = '{self.replay}' must be one of {samplings} (a "
                "dataset has no model for coverage replay)"
            )
        if self.per_normalise not in replay.NORMALISATIONS:
            raise ConfigError(
                f"config.per_normalise = '{self.per_normalise}' must be one of "
                f"{', '.join(replay.NORMALISATIONS)}"
            )
        if self.total_updates < self.num_evals:
            raise ConfigError(
                f"config.total_updates = {self.total_updates} must be ≥ num_evals = "
                f"{self.num_evals} (one update per evaluation interval at least)"
            )
        if not self.dataset:
            raise ConfigError("config.dataset: name the dataset file to learn from (.npz)")
        dataset_source.check_dataset(self)
        losses.check_config(self, masks_actions=deep_q.masks_actions(self))
        probes.check_diagnostics(self, self.updates_per_eval, self.batch_size)

    @property
    def loss_options(self) -> dict[str, Any]:
        """The keywords of :func:`qlearn.losses.resolve` this config gives."""
        return deep_q.replay_loss_options(self)

    @property
    def value_head(self) -> heads.Head:
        return heads.of_config(self)

    @property
    def updates_per_eval(self) -> int:
        """Updates per evaluation interval: ⌊total_updates / num_evals⌋."""
        return self.total_updates // self.num_evals

    @property
    def updates_per_run(self) -> int:
        return self.updates_per_eval * self.num_evals


@struct.dataclass
class OfflineHParams:
    """Offline hyperparameters: DQN's learner's and CQL's α (leaves [] or [H], vmappable)."""

    lr: float = hparams.table_field(deep_q.SHARED_HPARAMS, "lr")
    gamma: float = hparams.table_field(deep_q.SHARED_HPARAMS, "gamma")
    cql_alpha: float = hparams.table_field(losses.HPARAMS, "cql_alpha")
    dr3_weight: float = hparams.table_field(losses.HPARAMS, "dr3_weight")
    per_alpha: float = hparams.table_field(replay_source.REPLAY_HPARAMS, "per_alpha")
    per_beta: float = hparams.table_field(
        replay_source.REPLAY_HPARAMS,
        "per_beta",
        help="prioritised sampling: importance-sampling exponent β at the start, annealed "
        "linearly to 1 over total_updates",
    )
    per_eps: float = hparams.table_field(replay_source.REPLAY_HPARAMS, "per_eps")
    target_tau: float = hparams.table_field(learners.TD_HPARAMS, "target_tau")
    target_period: int = hparams.table_field(learners.TD_HPARAMS, "target_period")
    huber_delta: float = hparams.table_field(deep_q.SHARED_HPARAMS, "huber_delta")
    max_grad_norm: float = hparams.table_field(deep_q.SHARED_HPARAMS, "max_grad_norm")
    loss_index: int = hparams.table_field(deep_q.SHARED_HPARAMS, "loss_index")
    v_min: float = hparams.table_field(heads.HPARAMS, "v_min")
    v_max: float = hparams.table_field(heads.HPARAMS, "v_max")
    hl_gauss_sigma: float = hparams.table_field(losses.HPARAMS, "hl_gauss_sigma")
    dqn_reg_weight: float = hparams.table_field(losses.HPARAMS, "dqn_reg_weight")
    munchausen_tau: float = hparams.table_field(losses.HPARAMS, "munchausen_tau")
    munchausen_alpha: float = hparams.table_field(losses.HPARAMS, "munchausen_alpha")
    munchausen_clip: float = hparams.table_field(losses.HPARAMS, "munchausen_clip")
    dormant_tau: float = hparams.table_field(probes.DIAGNOSTIC_HPARAMS, "dormant_tau")
    srank_delta: float = hparams.table_field(probes.DIAGNOSTIC_HPARAMS, "srank_delta")


COUNT_BINS = (0, 1, 10, 100)
"""The lower edges of the coverage bins of :func:`coverage_errors`: pairs the data take 0
times, 1–9, 10–99 and ≥ 100 times."""


def coverage_errors(
    q_hat: jax.Array, truth: jax.Array, counts: jax.Array, reachable: jax.Array, name: str
) -> dict[str, jax.Array]:
    """The mean of q̂ − truth [S, A] over the reachable pairs in each bin of dataset
    ``counts`` (:data:`COUNT_BINS`): ``{name}_n{edge}`` (NaN for an empty bin)."""
    gap = q_hat - truth
    out = {}
    edges = (*COUNT_BINS, np.inf)
    for low, high in itertools.pairwise(edges):
        where = reachable & (counts >= low) & (counts < high)
        out[f"{name}_n{low}"] = jnp.sum(jnp.where(where, gap, 0.0)) / jnp.sum(where)
    return out


def offline_probe(prog: deep_q.Program, hp: Any, data: datasets.Dataset) -> Probe:
    """What the truth of a finite MDP says of an offline learner's q̂, at each evaluation
    point (the dataset fixed, so its counts N(s, a) are constants):

    - ``greedy_value`` / ``greedy_return``: J_γ and J_1 of greedy(q̂), exact
      (:func:`qlearn.dp.policy_value`);
    - ``ve_data``: the VE Σ μ_D (q* − q̂)² under the data's own frequencies; ``ve_behaviour``
      under the behaviour's exact μ (where the dataset keeps it); ``ve_uniform`` over the
      reachable pairs;
    - ``overest_star`` / ``overest_pi`` with ``_visited`` / ``_unvisited``: the mean of q̂ − q*
      and q̂ − q^π (π = greedy(q̂)) on the pairs the data take and those they do not
      (:func:`qlearn.algos.probes.value_gaps`), and the same in bins of N(s, a)
      (:func:`coverage_errors`: ``gap_star_n0`` .. ``gap_star_n100``);
    - ``overest_ood``: the mean of q̂ − q* over the actions the data never take in states they
      visit (the out-of-data actions a bootstrap maximises over), and ``greedy_ood``: the
      fraction of visited states whose greedy action the data never take there.
    """
    mdp, q_fn = prog.env_params, prog.q_function(hp)
    counts = jnp.asarray(data.counts(*mdp.rewards.shape), jnp.float32)
    mu = None if data.mu is None else jnp.asarray(data.mu, jnp.float32)
    q_star = dp.value_iteration(mdp, hp.gamma)[0]
    reachable = dp.reachable_pairs(mdp)

    def metrics(state: Any, learner: Any, env_steps: jax.Array) -> dict[str, jax.Array]:
        q_hat = q_fn(learner.params, mdp.features)  # every state, [S, A]
        greedy = dp.greedy_policy(q_hat, mdp.action_mask)
        uniform = reachable.astype(jnp.float32)
        out = {
            "updates": learner.updates,
            "greedy_value": dp.policy_value(mdp, greedy, hp.gamma),
            "greedy_return": dp.policy_value(mdp, greedy, 1.0),
            "ve_data": dp.value_error(q_hat, q_star, counts / jnp.sum(counts)),
            "ve_uniform": dp.value_error(q_hat, q_star, uniform / jnp.sum(uniform)),
        }
        if mu is not None:
            out["ve_behaviour"] = dp.value_error(q_hat, q_star, mu)
        out |= probes.value_gaps(mdp, q_hat, q_star, counts, hp.gamma)
        out |= coverage_errors(q_hat, q_star, counts, reachable, "gap_star")
        visited = jnp.sum(counts, axis=1) > 0
        ood = reachable & visited[:, None] & (counts == 0)
        out["overest_ood"] = jnp.sum(jnp.where(ood, q_hat - q_star, 0.0)) / jnp.sum(ood)
        picked = jnp.sum(greedy * (counts == 0), axis=1) > 0
        out["greedy_ood"] = jnp.sum(picked & visited) / jnp.maximum(jnp.sum(visited), 1)
        return out

    return Probe("offline", metrics)


def updates_probe() -> Probe:
    """``updates``: the learner's updates so far (what an offline run's curves are drawn
    against; the finite-MDP probe reports it itself)."""

    def metrics(state: Any, learner: Any, env_steps: jax.Array) -> dict[str, jax.Array]:
        return {"updates": learner.updates}

    return Probe("updates", metrics)


def agent(config: OfflineConfig, progress: deep_q.ProgressFn | None = None) -> driver.Agent:
    """An offline learner as the driver runs it: a dataset source, DQN's TD learner
    with ``config.loss`` under CQL's penalty (:func:`qlearn.losses.conservative`), and the
    probes (the finite-MDP truth of :func:`offline_probe`, or the update count; the
    diagnostics). One iteration per evaluation interval, of ``updates_per_eval`` updates;
    progress counts updates."""
    data = dataset_source.dataset_of(config.dataset)
    loss_fn = losses.resolve(config.loss, **config.loss_options)
    loss_fn = losses.conservative(losses.dr3(loss_fn), config.cal_ql)
    prog = deep_q.program(
        config, loss_fn, progress, config.value_head, False, config.iqn_action_quantiles
    )
    prog = dataclasses.replace(prog, explores=False)
    finite = envs.is_finite(config.env_id)
    transitions, states = dataset_source.constants(data, config.cal_ql)

    def build(hp: OfflineHParams) -> driver.Parts:
        source = dataset_source.dataset_source(
            prog,
            hp,
            transitions,
            states,
            config.updates_per_eval,
            config.updates_per_run,
            config.replay == "prioritized",
        )
        td = learners.td_learner(prog, hp, config.target_network)
        measured = (offline_probe(prog, hp, data),) if finite else (updates_probe(),)
        return driver.Parts(source, td, measured + probes.diagnosed(prog, hp, source, td))

    return driver.Agent(prog, build, 1, count=lambda state: state.learner.updates)


def make_train(
    config: OfflineConfig, *, progress: deep_q.ProgressFn | None = None
) -> Callable[[jax.Array, OfflineHParams], tuple[driver.RunState, dict[str, jax.Array]]]:
    """The pure training function of ``config`` (:func:`qlearn.algos.driver.make_train` of
    :func:`agent`); ``progress`` is called once per evaluation interval with (updates in the
    interval, greedy return). Every metric has shape [num_evals]."""
    return driver.make_train(agent(config, progress))


def make_stages(
    config: OfflineConfig, *, progress: deep_q.ProgressFn | None = None
) -> tuple[Callable, Callable]:
    """``(init, run_intervals)``: resumable ``train`` (:func:`qlearn.algos.driver.make_stages`)."""
    return driver.make_stages(agent(config, progress))


def learning_curve(metrics: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(updates [T], greedy returns [H, S, T], labels)."""
    return metrics["updates"][0, 0], metrics["eval_return"], "gradient updates", "greedy return"


ALGORITHM = Algorithm(
    name="offline",
    config=OfflineConfig,
    hparams=OfflineHParams,
    make_train=make_train,
    learning_curve=learning_curve,
    final_returns=deep_q.final_returns,
    final_statistic=deep_q.FINAL_STATISTIC,
    progress_total=lambda config: (config.updates_per_run, "update"),
    validate_hparams=OfflineConfig.validate_hparams,
    make_stages=make_stages,
    indexed_hparams=(("loss_index", "loss"),),
    extra_hparams=lambda config: losses.declared_hparams(config.loss, "transition"),
)
