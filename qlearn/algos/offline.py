"""Offline Q-learning: DQN's learner on a fixed dataset (:mod:`qlearn.datasets`), with CQL's
conservative penalty (Kumar et al. 2020) and behaviour cloning — and, on a finite MDP, the
exact errors of the learned values split by how well the data cover each (s, a).

``make_train(OfflineConfig(dataset=path, env_id=...)) -> train(key, hparams)`` like DQN's: the
driver (:mod:`qlearn.algos.driver`) runs a **dataset source** (:func:`dataset_source`: batches
drawn uniformly with replacement from the dataset, no env stepped) and DQN's TD learner
(:func:`qlearn.algos.learners.td_learner`, any replay loss and head, its target network),
the loss wrapped in CQL(H)'s penalty weighted by the hyperparameter ``cql_alpha``
(:func:`qlearn.losses.conservative`; α = 0, the default, is offline DQN to the bit, so a sweep
over α compares DQN and CQL in one compiled program) and DR3's feature penalty weighted by
``dr3_weight`` (:func:`qlearn.losses.dr3`, 0 by default). ``loss="bc"`` is behaviour
cloning.

The dataset is loaded once per process (:func:`dataset_of`) and enters the compiled program as
constants: every run of a sweep — every seed, α and learning rate in its lanes — reads the
same copy; none is made per lane. Metrics have T = ``num_evals`` evaluation points, each after
``total_updates / num_evals`` updates: ``updates``, the greedy return, the loss's metrics (and
``cql_penalty``), and on a finite MDP the ground truth of :func:`offline_probe`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from qlearn import datasets, dp, envs, heads, hparams, losses, policies, replay, sampling, sum_tree
from qlearn.algos import deep_q, driver, learners, probes, replay_source, rollout
from qlearn.algos.algorithm import Algorithm
from qlearn.algos.probes import Probe
from qlearn.algos.sources import Drawn, EnvLoop, Source
from qlearn.losses import LossRecord
from qlearn.types import ConfigError, LossFn, Transition, config_field, table_field

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

OFFLINE_HPARAMS: dict[str, dict[str, Any]] = {
    "cql_alpha": dict(
        default=0.0,
        low=0,
        help="CQL(H)'s α: the weight of logsumexp_b q̂(s, b) − q̂(s, a) beside the loss "
        "(Kumar et al. 2020); 0: offline DQN",
    ),
    "dr3_weight": dict(
        default=0.0,
        low=0,
        help="DR3's c: the weight of φ(s)·φ(s′), the penultimate features' dot product over "
        "the batch's transitions (Kumar et al. 2021); 0: off",
    ),
}
"""The hyperparameters an offline learner reads beyond DQN's (name -> :func:`qlearn.hparams.
field` keywords)."""


@functools.lru_cache(maxsize=4)
def _load(path: str, stamp: tuple[int, int]) -> datasets.Dataset:
    return datasets.load(path)


def dataset_of(path: str) -> datasets.Dataset:
    """The dataset in ``path``, read once per process while the file is unchanged (keyed by
    its modification time and size)."""
    try:
        st = os.stat(path)
    except OSError:
        raise datasets.DatasetError(f"{path}: no such dataset file") from None
    return _load(str(Path(path).resolve()), (st.st_mtime_ns, st.st_size))


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
        :func:`~qlearn.algos.deep_q.check_replay_hparams`."""
        deep_q.check_replay_hparams(self, hp)

    def _validate(self) -> None:
        heads.check_config(self)
        deep_q.check_shared(self, self.value_head)
        deep_q.check_counts(self, ("total_updates", "batch_size"))
        if self.replay not in SAMPLINGS:
            raise ConfigError(
                f"config.replay = '{self.replay}' must be one of {', '.join(SAMPLINGS)} (a "
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
        try:
            data = dataset_of(self.dataset)
            env, env_params = deep_q.make_env(self)
            datasets.check_env(data, env, env_params, f"config.dataset = {self.dataset}")
        except datasets.DatasetError as e:
            raise ConfigError(str(e)) from None
        if envs.is_finite(self.env_id) and data.state is None:
            raise ConfigError(
                f"config.dataset = {self.dataset} keeps no finite-MDP states, which the "
                f"ground truth of {self.env_id} counts coverage by"
            )
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
    cql_alpha: float = hparams.table_field(OFFLINE_HPARAMS, "cql_alpha")
    dr3_weight: float = hparams.table_field(OFFLINE_HPARAMS, "dr3_weight")
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


SAMPLINGS = ("uniform", "prioritized")
"""How an offline source draws its batches (``config.replay``)."""


@struct.dataclass
class DatasetState:
    """A dataset source's state: the evaluation's bookkeeping (one env, never stepped: its
    ``env_steps`` stay 0) and, for prioritised sampling, this run's priorities of the fixed
    transitions (a sum tree over M leaves, the largest mass so far, the batches drawn); None
    for uniform."""

    loop: EnvLoop
    priorities: Any = None
    max_priority: jax.Array | None = None
    updates: jax.Array | None = None
    """the batches drawn so far (prioritised: what β is annealed by)."""


def dataset_source(
    prog: deep_q.Program,
    hp: Any,
    data: Transition,
    state: jax.Array | None,
    updates: int,
    updates_per_run: int,
) -> Source:
    """Batches of ``prog.config.batch_size`` transitions drawn with replacement from the
    dataset ``data`` (leaves [M, ...], constants shared by every lane), ``updates`` of them per
    iteration. ``config.replay = 'uniform'``: exactly uniform
    (:func:`qlearn.sampling.uniform_index`). ``'prioritized'``: each run keeps its own
    priorities of the M transitions (all 1 at the start), samples by them
    (:func:`qlearn.replay.sample_prioritized`, β annealed from ``hp.per_beta`` to 1 over the
    ``updates_per_run``, weights normalised as ``per_normalise`` says) and sets the drawn ones
    to the loss's priorities (p = |ℓ| + ε, to the power α). ``state`` [M]: each transition's
    finite-MDP state, reported in :attr:`Drawn.state` (None elsewhere)."""
    config = prog.config
    size, batch_size = data.action.shape[0], config.batch_size
    prioritized = config.replay == "prioritized"

    def view(source: DatasetState) -> replay.ReplayBuffer:  # the constants and this run's tree
        size_ = jnp.int32(size)
        return replay.ReplayBuffer(data, size_, size_, source.priorities, source.max_priority)

    def init(params: Any, reset_key: jax.Array, key: jax.Array) -> tuple:
        obs, env_state = rollout.reset_envs(prog.env, prog.env_params, reset_key, 1)
        zero = jnp.zeros((), jnp.int32)
        loop = EnvLoop(env_state, obs, zero, rollout.init_episode_stats(1))
        if not prioritized:
            return DatasetState(loop), key, None
        tree = sum_tree.init(size, track_min=config.per_normalise == "buffer")
        tree = sum_tree.update(tree, jnp.arange(size), jnp.ones(size, jnp.float32))
        return DatasetState(loop, tree, jnp.float32(1.0), zero), key, None

    def next_(source: DatasetState, params: Any, key: jax.Array) -> tuple:
        key, k = jax.random.split(key)
        words = sampling.WORDS_PER_INDEX if not prioritized else source.priorities.depth
        plan = jax.random.bits(k, (updates, batch_size, words), jnp.uint32)
        return source, key, plan, None

    def batch(source: DatasetState, x: dict[str, Any]) -> tuple[Transition, Drawn]:
        if not prioritized:
            idx = sampling.uniform_index(x["plan"], size)
            tr = jax.tree.map(lambda a: a[idx], data)
        else:
            beta = policies.linear_schedule(source.updates, hp.per_beta, 1.0, updates_per_run)
            tr, idx, weight = replay.sample_prioritized(
                view(source), x["plan"], beta, config.per_normalise
            )
            tr = tr.replace(weight=weight)
        return tr, Drawn(idx, None if state is None else state[idx])

    def feedback(source: DatasetState, drawn: Drawn, update: Any) -> DatasetState:
        replay_source.check_priority(update)
        new = replay.update_priorities(
            view(source), drawn.index, update.priority, hp.per_alpha, hp.per_eps
        )
        return source.replace(
            priorities=new.priorities, max_priority=new.max_priority, updates=source.updates + 1
        )

    if not prioritized:
        return Source(init, next_, batch, (updates,))
    return Source(init, next_, batch, (updates,), feedback)


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
    """An offline learner as the driver runs it: a :func:`dataset_source`, DQN's TD learner
    with ``config.loss`` under CQL's penalty (:func:`qlearn.losses.conservative`), and the
    probes (the finite-MDP truth of :func:`offline_probe`, or the update count; the
    diagnostics). One iteration per evaluation interval, of ``updates_per_eval`` updates;
    progress counts updates."""
    data = dataset_of(config.dataset)
    loss_fn = losses.conservative(losses.dr3(losses.resolve(config.loss, **config.loss_options)))
    prog = deep_q.program(
        config, loss_fn, progress, config.value_head, False, config.iqn_action_quantiles
    )
    prog = dataclasses.replace(prog, explores=False)
    finite = envs.is_finite(config.env_id)
    transitions = jax.tree.map(jnp.asarray, data.transitions)
    states = None if data.state is None else jnp.asarray(data.state, jnp.int32)

    def build(hp: OfflineHParams) -> driver.Parts:
        source = dataset_source(
            prog, hp, transitions, states, config.updates_per_eval, config.updates_per_run
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
