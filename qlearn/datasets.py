"""Datasets for offline Q-learning: fixed sets of transitions, their provenance, and on a finite
MDP the behaviour policy's exact state-action distribution μ(s, a).

A dataset is M one-step transitions (:class:`~qlearn.types.Transition` leaves [M, ...]) and
what made them (:attr:`Dataset.meta`): the env, its arguments, the behaviour, the seed and the
qlearn provenance. On a finite MDP it also keeps each transition's state index of ``obs``
(``state`` [M], what the ground-truth metrics count coverage by) and the behaviour's exact μ
(``mu`` [S, A], :func:`qlearn.dp.state_action_distribution`), so a dataset's coverage is a
number rather than a guess.

On disk a dataset is one ``.npz`` file (:func:`save`, :func:`load`): an array per field of the
transitions (``obs``, ``action``, ``reward``, ``next_obs``, ``terminated``, ``truncated``,
``steps``; ``next_action_mask``, ``return_to_go``, ``state``, ``mu`` where present) and
``meta``, a JSON string whose ``schema`` is :data:`SCHEMA`. numpy reads it without qlearn
(``numpy.load``). A save never writes over an existing file unless asked, and writes through a
temporary file, so a killed save leaves no half-written dataset.

Behaviour policies with known coverage on finite MDPs (:data:`BEHAVIOURS`): ``uniform``
(every available action alike), ``expert`` (greedy in q*), ``eps_greedy`` (ε-greedy of q*) and
``mixture`` (half the transitions from ``expert``, half from ``uniform``, as D4RL's
medium-expert mixes two policies' data). :func:`finite_dataset` collects one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qlearn import dp, envs, policies
from qlearn.algos import rollout
from qlearn.types import Transition

SCHEMA = "qlearn-dataset/1"
"""The ``meta["schema"]`` of the files this version writes and reads."""

REQUIRED = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "steps")
"""The transition fields every dataset file holds (leading axis M)."""

OPTIONAL = ("next_action_mask", "return_to_go")
"""Transition fields a dataset holds where they exist: the env's action masks; each
transition's Monte-Carlo return-to-go at ``meta["gamma"]`` (:func:`returns_to_go`, what
Cal-QL calibrates by), where the dataset keeps one-step transitions in episode order."""

BEHAVIOURS = ("uniform", "expert", "eps_greedy", "mixture")
"""The behaviour policies :func:`finite_dataset` collects with."""

DTYPES = {"action": np.int32, "reward": np.float32, "terminated": np.bool_,
          "truncated": np.bool_, "steps": np.int32, "next_action_mask": np.bool_,
          "return_to_go": np.float32}  # fmt: skip
"""The dtype each field is stored and loaded with (``obs`` keeps its own)."""


class DatasetError(ValueError):
    """A dataset that cannot be used as asked, naming the file or field at fault."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """M transitions and where they came from.

    Attributes:
      transitions: :class:`~qlearn.types.Transition` of numpy arrays, leaves [M, ...]
        (``weight`` None).
      meta: JSON-able provenance: ``schema``, ``env_id``, ``env_kwargs``, ``behaviour``,
        ``seed``, and what made it (``source``, ``qlearn`` versions).
      state: int32 [M], the finite MDP state of each ``obs`` (None elsewhere).
      mu: float [S, A], the behaviour's exact state-action distribution on a finite MDP
        (None where unknown).
    """

    transitions: Transition
    meta: dict[str, Any]
    state: np.ndarray | None = None
    mu: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.transitions.action.shape[0])

    @property
    def env_id(self) -> str:
        return self.meta["env_id"]

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return dict(self.meta.get("env_kwargs", {}))

    def counts(self, num_states: int, num_actions: int) -> np.ndarray:
        """float [S, A]: how many transitions start at each (s, a) (finite MDPs only)."""
        if self.state is None:
            raise DatasetError("the dataset keeps no finite-MDP states to count")
        out = np.zeros((num_states, num_actions))
        np.add.at(out, (self.state, np.asarray(self.transitions.action)), 1.0)
        return out


# -- the file -------------------------------------------------------------------------------


def save(path: str | Path, dataset: Dataset, *, overwrite: bool = False) -> Path:
    """Write ``dataset`` to ``path`` (``.npz``; see the module docstring). An existing file is
    refused unless ``overwrite``; the file appears whole or not at all."""
    path = Path(path)
    if path.suffix != ".npz":
        raise DatasetError(f"{path}: a dataset file is a .npz")
    if path.exists() and not overwrite:
        raise DatasetError(
            f"{path} exists: nothing written (overwrite=True, or `qlearn dataset --overwrite`, "
            "replaces it)"
        )
    if len(dataset) == 0:
        raise DatasetError(f"{path}: refusing to write an empty dataset")
    tr = dataset.transitions
    arrays = {name: np.asarray(getattr(tr, name)) for name in REQUIRED}
    for name in OPTIONAL:
        if getattr(tr, name) is not None:
            arrays[name] = np.asarray(getattr(tr, name))
    for name in ("state", "mu"):
        if getattr(dataset, name) is not None:
            arrays[name] = np.asarray(getattr(dataset, name))
    meta = {**dataset.meta, "schema": SCHEMA, "size": len(dataset)}
    arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path) -> Dataset:
    """The dataset in ``path``, checked: a readable ``.npz`` whose ``meta`` has this
    version's :data:`SCHEMA`, every required field present, non-empty and of one length.
    Anything else raises :class:`DatasetError` naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path}: not a readable .npz dataset (truncated?): {e}") from None
    if "meta" not in arrays:
        raise DatasetError(f"{path}: no 'meta' field: not a qlearn dataset ({SCHEMA})")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: field 'meta' is not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        found = meta.get("schema") if isinstance(meta, dict) else None
        raise DatasetError(f"{path}: schema {found!r} is not {SCHEMA!r}: a foreign file")
    missing = [name for name in REQUIRED if name not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing field(s) {', '.join(missing)}")
    size = arrays["action"].shape[0] if arrays["action"].ndim else 0
    if size == 0:
        raise DatasetError(f"{path}: the dataset is empty (field 'action' has no rows)")
    for name in (*REQUIRED, *OPTIONAL, "state"):
        if name in arrays and (arrays[name].ndim == 0 or arrays[name].shape[0] != size):
            raise DatasetError(
                f"{path}: field '{name}' has {arrays[name].shape[:1]} rows, 'action' {size}"
            )
    if "env_id" not in meta:
        raise DatasetError(f"{path}: field 'meta' names no env_id")
    fields = {
        name: arrays[name].astype(DTYPES[name]) if name in DTYPES else arrays[name]
        for name in (*REQUIRED, *OPTIONAL)
        if name in arrays
    }
    for name in OPTIONAL:
        fields.setdefault(name, None)
    if fields["return_to_go"] is not None and "gamma" not in meta:
        raise DatasetError(f"{path}: field 'return_to_go' without the γ it is at (meta gamma)")
    transitions = Transition(**fields)
    return Dataset(transitions, meta, arrays.get("state"), arrays.get("mu"))


def check_env(dataset: Dataset, env: Any, env_params: Any, where: str = "dataset") -> None:
    """Raise :class:`DatasetError` (naming ``where``) unless the dataset's observations have the
    env's observation shape and its actions are the env's (0 ≤ a < A)."""
    shape = tuple(env.observation_space(env_params).shape)
    obs = tuple(np.shape(dataset.transitions.obs)[1:])
    if obs != shape:
        raise DatasetError(f"{where}: observations of shape {obs}, the env's are {shape}")
    num_actions = env.action_space(env_params).n
    action = np.asarray(dataset.transitions.action)
    if action.min() < 0 or action.max() >= num_actions:
        raise DatasetError(
            f"{where}: actions in [{action.min()}, {action.max()}], the env has {num_actions}"
        )


def concatenate(parts: list[Dataset], meta: dict[str, Any]) -> Dataset:
    """One dataset of ``parts`` (same env) in order, with ``meta``; ``mu`` the transitions'
    share-weighted mixture of the parts' (None unless every part has one)."""
    transitions = jax.tree.map(lambda *xs: np.concatenate(xs), *(p.transitions for p in parts))
    state = None
    if all(p.state is not None for p in parts):
        state = np.concatenate([p.state for p in parts])
    mu = None
    if all(p.mu is not None for p in parts):
        total = sum(len(p) for p in parts)
        mu = sum(p.mu * (len(p) / total) for p in parts)
    return Dataset(transitions, meta, state, mu)


def returns_to_go(reward: np.ndarray, end: np.ndarray, gamma: float) -> np.ndarray:
    """Monte-Carlo returns-to-go of N envs' steps in time order, [T, N] each:
    G_t = r_t + γ·G_{t+1} within an episode, G_t = r_t where the episode ends at step t
    (``end``: terminated or truncated — a time limit ends the sum, as it ends the return an
    evaluation measures), and −∞ for the steps of an episode the data cut before its end
    (their return is unknown). float32 [T, N]."""
    reward, end = np.asarray(reward, np.float64), np.asarray(end, bool)
    out = np.empty(reward.shape, np.float64)
    running = np.full(reward.shape[1:], -np.inf)
    for t in range(reward.shape[0] - 1, -1, -1):
        running = reward[t] + gamma * np.where(end[t], 0.0, running)
        out[t] = running
    return out.astype(np.float32)


def with_returns(tr: Transition, gamma: float) -> Transition:
    """``tr`` (leaves [T, N, ...], N envs' one-step transitions in time order) with
    :func:`returns_to_go` at ``gamma`` in its ``return_to_go``."""
    end = np.asarray(tr.terminated) | np.asarray(tr.truncated)
    return tr.replace(return_to_go=returns_to_go(np.asarray(tr.reward), end, gamma))


# -- behaviour policies on finite MDPs --------------------------------------------------------


def behaviour_policy(mdp: Any, name: str, q_star: jax.Array, epsilon: float = 0.3) -> np.ndarray:
    """π [S, A] of the behaviour ``name`` (one of :data:`BEHAVIOURS` but ``mixture``, which is
    a mixture of datasets): ``uniform`` over the available actions, ``expert`` greedy in
    ``q_star`` (ties to the first action, as :func:`qlearn.dp.greedy_policy`), ``eps_greedy``
    with probability ``epsilon`` uniform, else greedy."""
    greedy = dp.greedy_policy(q_star, mdp.action_mask)
    if name == "expert":
        return np.asarray(greedy)
    if name == "uniform":
        epsilon = 1.0
    elif name != "eps_greedy":
        raise DatasetError(f"behaviour '{name}' must be one of {', '.join(BEHAVIOURS)}")
    return np.asarray(policies.epsilon_greedy_probs(q_star, epsilon, mdp.action_mask))


def collect(
    env: Any,
    mdp: Any,
    policy: jax.Array,
    size: int,
    key: jax.Array,
    gamma: float,
    num_envs: int = 16,
) -> tuple[Transition, np.ndarray]:
    """``size`` transitions of ``policy`` [S, A] in ``num_envs`` envs of the finite MDP (env
    steps in time-major order, auto-reset, truncated at the MDP's time limit), with their
    returns-to-go at ``gamma`` (:func:`with_returns`), and the state index of each ``obs``:
    (transitions [size, ...], state [size])."""
    steps = -(-size // num_envs)
    log_pi = jnp.log(jnp.asarray(policy, jnp.float32))

    @jax.jit
    def run(key: jax.Array) -> tuple[Transition, jax.Array]:
        k_reset, k_loop = jax.random.split(key)
        obs, env_state = rollout.reset_envs(env, mdp, k_reset, num_envs)

        def step(carry: tuple, k: jax.Array) -> tuple:
            obs, env_state = carry
            k_act, k_step = jax.random.split(k)
            state = env_state.state
            action = jax.random.categorical(k_act, log_pi[state]).astype(jnp.int32)
            keys = jax.random.split(k_step, num_envs)
            obs, env_state, tr = rollout.step_envs(env, mdp, keys, env_state, obs, action)
            return (obs, env_state), (tr, state)

        _, out = jax.lax.scan(step, (obs, env_state), jax.random.split(k_loop, steps))
        return out

    tr, state = run(key)
    tr = with_returns(tr.replace(weight=None), gamma)
    flat = jax.tree.map(lambda x: np.asarray(x).reshape(-1, *x.shape[2:])[:size], (tr, state))
    return flat


def finite_dataset(
    env_id: str,
    behaviour: str,
    size: int,
    seed: int = 0,
    *,
    gamma: float = 0.99,
    epsilon: float = 0.3,
    env_kwargs: dict[str, Any] | None = None,
) -> Dataset:
    """A dataset of ``size`` transitions of ``behaviour`` (:data:`BEHAVIOURS`) on the finite
    MDP ``env_id`` (with ``env_kwargs``), collected from ``jax.random.key(seed)``; q* for
    ``expert`` and ``eps_greedy`` by value iteration at ``gamma``. ``mu``: the behaviour's
    exact μ (:func:`qlearn.dp.state_action_distribution`, time limits not modelled)."""
    if not envs.is_finite(env_id):
        raise DatasetError(f"env_id '{env_id}' is not a finite MDP (Garnet, CliffWalking, ...)")
    if size < 1:
        raise DatasetError(f"size = {size} must be ≥ 1")
    env_kwargs = dict(env_kwargs or {})
    env, mdp = envs.make(env_id, **env_kwargs)
    q_star = dp.value_iteration(mdp, gamma)[0]
    meta = {
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "behaviour": behaviour,
        "epsilon": epsilon if behaviour == "eps_greedy" else None,
        "gamma": gamma,
        "seed": seed,
        "source": "qlearn.datasets.finite_dataset",
    }
    parts = [("expert", size // 2), ("uniform", size - size // 2)]
    if behaviour != "mixture":
        parts = [(behaviour, size)]
    key = jax.random.key(seed)
    datasets = []
    for i, (name, count) in enumerate(parts):
        policy = behaviour_policy(mdp, name, q_star, epsilon)
        tr, state = collect(env, mdp, policy, count, jax.random.fold_in(key, i), gamma)
        mu = np.asarray(dp.state_action_distribution(mdp, jnp.asarray(policy)))
        datasets.append(Dataset(tr, meta, state, mu))
    return concatenate(datasets, meta)


def from_dqn_replay(config: Any, hparams: Any = None, seed: int = 0) -> Dataset:
    """The DQN-Replay recipe (Agarwal et al. 2020): train DQN (``config``, a
    :class:`~qlearn.algos.dqn.DQNConfig` without a recurrent core, one run of ``seed``) and
    return what its replay buffer holds at the end — the last ``buffer_size`` transitions it
    collected, ε-greedy under policies from across that stretch of training. The point of
    training is ``config.total_steps``; an early one gives a medium dataset, a late one an
    expert's. On a finite MDP each item's state comes along. With ``n_step`` > 1 the items are
    n-step transitions (rewards discounted at the run's γ, kept in ``meta["gamma"]``).
    ``meta`` holds the run's config, hyperparameters and final greedy return. One-step items
    keep their returns-to-go at the run's γ (:func:`ring_returns`); n-step items none."""
    from qlearn import hparams as hparams_lib
    from qlearn import sweep
    from qlearn.algos import dqn

    if not isinstance(config, dqn.DQNConfig) or config.core != "none":
        raise DatasetError("from_dqn_replay takes a feed-forward DQNConfig (core='none')")
    hparams = dqn.DQNHParams() if hparams is None else hparams
    run = sweep.run(config, hparams=hparams, seeds=1, base_seed=seed, lanes=1, keep_state=True)
    buffer = run.final_state.source.buffer
    size = int(np.asarray(buffer.size).reshape(-1)[0])
    position = int(np.asarray(buffer.position).reshape(-1)[0])
    items = jax.tree.map(lambda x: np.asarray(x).reshape(-1, *x.shape[3:])[:size], buffer.storage)
    gamma = float(np.asarray(hparams.gamma))
    if config.n_step == 1:
        tr = ring_returns(items.transition, position, config.actual_total_steps,
                          config.num_envs, gamma)  # fmt: skip
        items = items.replace(transition=tr)
    meta = {
        "env_id": config.env_id,
        "env_kwargs": dict(config.env_kwargs),
        "behaviour": "dqn_replay",
        "seed": seed,
        "gamma": gamma,
        "n_step": config.n_step,
        "dqn_total_steps": config.actual_total_steps,
        "dqn_final_return": float(np.asarray(run.metrics["eval_return"])[0, 0, -1]),
        "dqn_config": run.spec.to_json()["config"],
        "dqn_hparams": hparams_lib.to_lists(hparams),
        "source": "qlearn.datasets.from_dqn_replay",
    }
    state = None if items.state is None else np.asarray(items.state, np.int32)
    return Dataset(items.transition.replace(weight=None), meta, state)


def ring_returns(
    tr: Transition, position: int, added: int, num_envs: int, gamma: float
) -> Transition:
    """``tr`` (leaves [M, ...]: a replay ring's slots, M = the ring's size, after ``added``
    one-step items of ``num_envs`` envs were written N per env step, in env order, from slot 0
    on, and the next write at ``position``) with each slot's :func:`returns_to_go` at
    ``gamma``: the ring is unrolled from its oldest item, each item placed at its env step and
    env, and the returns run back through each env's steps."""
    size = tr.action.shape[0]
    if added % size != position % size or added < size:
        raise DatasetError(f"a ring of {size} items at position {position} cannot hold {added}")
    first = added - size  # the global index of the oldest item kept
    slot = (position + np.arange(size)) % size if added > size else np.arange(size)
    index = first + np.arange(size)  # the global index of the item in each slot of `slot`
    row, env = index // num_envs - first // num_envs, index % num_envs
    rows = row[-1] + 1
    reward = np.zeros((rows, num_envs), np.float32)
    end = np.ones((rows, num_envs), bool)  # grid cells before the oldest item: never read
    reward[row, env] = np.asarray(tr.reward)[slot]
    end[row, env] = (np.asarray(tr.terminated) | np.asarray(tr.truncated))[slot]
    out = np.empty(size, np.float32)
    out[slot] = returns_to_go(reward, end, gamma)[row, env]
    return tr.replace(return_to_go=out)


def coverage(dataset: Dataset, mdp: Any) -> dict[str, float]:
    """How much of a finite MDP a dataset covers: ``pairs_seen``, the fraction of the pairs an
    agent can act in (:func:`qlearn.dp.reachable_pairs`) with at least one transition;
    ``pairs_mu``, the fraction with μ > 0 under the behaviour's exact μ (where kept);
    ``states_seen``, the fraction of reachable states with a transition."""
    reachable = np.asarray(dp.reachable_pairs(mdp))
    counts = dataset.counts(*reachable.shape)
    out = {
        "pairs_seen": float(np.sum((counts > 0) & reachable) / np.sum(reachable)),
        "states_seen": float(
            np.sum(counts.sum(1)[reachable.any(1)] > 0) / np.sum(reachable.any(1))
        ),
    }
    if dataset.mu is not None:
        out["pairs_mu"] = float(np.sum((dataset.mu > 0) & reachable) / np.sum(reachable))
    return out
