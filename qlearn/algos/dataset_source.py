"""A fixed dataset (:mod:`qlearn.datasets`) as a source of batches: what an offline learner
trains on (:mod:`qlearn.algos.offline`) and what an online DQN run is pretrained on and mixes
into its replay (offline-to-online, :mod:`qlearn.algos.dqn`).

A dataset is read once per process (:func:`dataset_of`) and enters the compiled program as
constants: every run of a sweep reads the same copy; none is made per lane.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from qlearn import datasets, envs, policies, replay, sampling, sum_tree
from qlearn.algos import deep_q, replay_source, rollout
from qlearn.algos.sources import Drawn, EnvLoop, Source
from qlearn.types import ConfigError, Transition

SAMPLINGS = ("uniform", "prioritized")
"""How a dataset source draws its batches."""

START_FIELDS: dict[str, tuple[Any, str]] = {
    "dataset": (
        "",
        "offline-to-online: a dataset file (.npz of qlearn.datasets, env_id's observations "
        "and actions) to pretrain on (offline_updates) and mix into replay (hparam "
        "dataset_fraction); its runs' losses carry CQL's and DR3's penalties (hparams "
        "cql_alpha offline, online_cql_alpha online, dr3_weight); '': none",
    ),
    "offline_updates": (
        0,
        "offline-to-online: updates on the dataset alone before the first env step (a "
        "multiple of num_evals; the offline learner's run of the seed key folded with 1)",
    ),
    "cal_ql": (
        False,
        "Cal-QL (Nakamoto et al. 2023): CQL's penalty floored at the dataset's Monte-Carlo "
        "return-to-go, logsumexp_b max(q̂(s, b), G(s)) − q̂(s, a), so q̂ is pushed down no "
        "lower than the data's own returns; the dataset must keep return_to_go at the run's "
        "gamma (online samples keep none: CQL's penalty on them)",
    ),
}
"""The static fields of a run that learns from a dataset (name -> (default, help)):
``dataset`` and ``offline_updates`` of an online run that starts from one; ``cal_ql`` of that
run and of an offline one."""

START_HPARAMS = ("cql_alpha", "online_cql_alpha", "dr3_weight", "dataset_fraction")
"""The hyperparameters an online run reads only where it has a dataset."""


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


def check_dataset(config: Any) -> datasets.Dataset:
    """The dataset ``config.dataset`` names, after checking that it loads and fits
    ``config``'s env (observation shape, action count; on a finite MDP, the states that the
    ground truth counts coverage by): else :class:`~qlearn.types.ConfigError` naming the
    field and the file."""
    where = f"config.dataset = {config.dataset}"
    try:
        data = dataset_of(config.dataset)
        env, env_params = deep_q.make_env(config)
        datasets.check_env(data, env, env_params, where)
    except datasets.DatasetError as e:
        raise ConfigError(str(e)) from None
    if envs.is_finite(config.env_id) and data.state is None:
        raise ConfigError(
            f"{where} keeps no finite-MDP states, which the ground truth of {config.env_id} "
            "counts coverage by"
        )
    if config.cal_ql and data.transitions.return_to_go is None:
        raise ConfigError(
            f"config.cal_ql calibrates by returns-to-go; {where} keeps none (a dataset of "
            "n-step transitions, or written before they were kept)"
        )
    return data


def check_start_config(config: Any) -> None:
    """Raise :class:`~qlearn.types.ConfigError` unless an online config's :data:`START_FIELDS`
    fit: ``offline_updates`` a count that needs a dataset and divides into ``num_evals``
    iterations; the dataset (:func:`check_dataset`) for a feed-forward network (it keeps
    transitions, not a recurrent core's sequences)."""
    deep_q.check_counts(config, ("offline_updates",), minimum=0)
    if not config.dataset:
        if config.cal_ql:
            raise ConfigError("config.cal_ql calibrates a dataset's CQL: name it in config.dataset")
        if config.offline_updates:
            raise ConfigError(
                f"config.offline_updates = {config.offline_updates} trains on a dataset: name "
                "it in config.dataset"
            )
        return
    if getattr(config, "core", "none") != "none":
        raise ConfigError(
            f"config.dataset = {config.dataset} keeps transitions, not the sequences a "
            f"recurrent core replays: use core='none' (it is '{config.core}')"
        )
    check_dataset(config)
    if config.offline_updates % config.num_evals:
        raise ConfigError(
            f"config.offline_updates = {config.offline_updates} must be a multiple of "
            f"num_evals = {config.num_evals} (the pretraining runs in num_evals iterations)"
        )


def check_start_hparams(config: Any, hp: Any) -> None:
    """Raise :class:`~qlearn.types.ConfigError` where a hyperparameter of
    :data:`START_HPARAMS` is set (≠ 0) without a dataset to apply to, or ``dataset_fraction``
    beside prioritised replay (whose priorities the dataset's samples have none of)."""
    for name in START_HPARAMS:
        value = np.asarray(getattr(hp, name))
        if not config.dataset and np.any(value != 0):
            raise ConfigError(
                f"hparams.{name} = {value.tolist()} applies to a run with config.dataset; "
                "this one has none"
            )
    check_calibration(config, hp)
    fraction = np.asarray(hp.dataset_fraction)
    if config.replay == "prioritized" and np.any(fraction != 0):
        raise ConfigError(
            f"hparams.dataset_fraction = {fraction.tolist()} mixes the dataset into uniform or "
            "coverage replay only; config.replay is 'prioritized'"
        )


def check_calibration(config: Any, hp: Any) -> None:
    """Raise :class:`~qlearn.types.ConfigError` where ``config.cal_ql`` calibrates by the
    dataset's returns-to-go at a γ other than the run's ``hp.gamma`` (every lane's)."""
    if not config.cal_ql:
        return
    data_gamma = dataset_of(config.dataset).meta["gamma"]
    if np.any(np.asarray(hp.gamma, np.float32) != np.float32(data_gamma)):
        raise ConfigError(
            f"hparams.gamma = {np.asarray(hp.gamma).tolist()}: config.cal_ql calibrates by the "
            f"returns-to-go of {config.dataset}, discounted at γ = {data_gamma}"
        )


def constants(data: datasets.Dataset, calibrated: bool) -> tuple[Transition, jax.Array | None]:
    """The dataset's transitions (leaves [M, ...]; ``return_to_go`` only where ``calibrated``,
    Cal-QL) and finite-MDP states (int32 [M], or None) as the arrays a compiled program closes
    over."""
    states = None if data.state is None else jnp.asarray(data.state, jnp.int32)
    transitions = data.transitions
    if not calibrated:
        transitions = transitions.replace(return_to_go=None)
    return jax.tree.map(jnp.asarray, transitions), states


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
    prioritized: bool = False,
) -> Source:
    """Batches of ``prog.config.batch_size`` transitions drawn with replacement from the
    dataset ``data`` (leaves [M, ...], constants shared by every lane), ``updates`` of them per
    iteration. Uniform: exactly (:func:`qlearn.sampling.uniform_index`). ``prioritized``: each
    run keeps its own priorities of the M transitions (all 1 at the start), samples by them
    (:func:`qlearn.replay.sample_prioritized`, β annealed from ``hp.per_beta`` to 1 over the
    ``updates_per_run``, weights normalised as ``config.per_normalise`` says) and sets the
    drawn ones to the loss's priorities (p = |ℓ| + ε, to the power α). ``state`` [M]: each
    transition's finite-MDP state, reported in :attr:`Drawn.state` (None elsewhere)."""
    config = prog.config
    size, batch_size = data.action.shape[0], config.batch_size

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
