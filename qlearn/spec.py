"""The identity of a run or sweep: :class:`Spec`, what determines its metrics (given the
backend), and :func:`make_spec`, the one way to build it (the CLI, :func:`qlearn.sweep.run` and
the experiments all call it).

A spec is JSON on disk (``config.json``'s ``"spec"``), written by :meth:`Spec.to_json` and read
back by :meth:`Spec.from_json`, for every format qlearn has written:

====== =====================================================================================
format what it records
====== =====================================================================================
1      algo, base config, per-configuration hyperparameters, swept names, seeds
2      + static groups (a grid over config fields) and the search (grid or random draws)
3      + ``lanes``, the runs of each device's compiled program (part of the identity: XLA
       compiles a batch of 16 differently from one of 8)
====== =====================================================================================

How many devices, processes or chunks share the work is not part of the identity: the results
are the same however a spec runs (see :mod:`qlearn.sweep`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from qlearn import algos, losses, search
from qlearn import hparams as hparams_lib
from qlearn.algos.algorithm import Algorithm

FORMAT = 3
"""The format :func:`make_spec` writes (older ones still load, see the module docstring)."""
AXES = ("config", "seed", "time")
DEFAULT_LANES = 8
"""Runs in each device's compiled program when a spec does not say otherwise. The same on every
backend, so that the default identity of a run does not depend on the machine; raise it on an
accelerator (``lanes=256``), where more lanes cost little more than one."""


class SpecError(ValueError):
    """A spec that cannot be built: bad seeds, lanes or picks (the message says which)."""


def jsonable(value: Any) -> Any:
    """A config value as JSON: tuples as lists, functions (user losses) as 'module:name', loss
    records by their names."""
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if callable(value) or isinstance(value, losses.LossRecord):
        return losses.spec_name(value)
    return value


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{name} = {value!r} must be an integer ≥ 1")


@dataclasses.dataclass(frozen=True)
class Group:
    """One compiled group: the static config changes it makes and its configurations."""

    overrides: dict[str, Any]
    """config field -> value (JSON form) for this group."""
    configs: tuple[int, ...]
    """indices of its configurations, ascending."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """What runs, as data. Two specs are the same run iff they are equal (``==``) — which is
    also iff their :meth:`to_json` are."""

    algo: str
    config: dict[str, Any]
    """the base static config, field -> JSON value."""
    hparams: dict[str, list]
    """hyperparameter -> one value per configuration (every name of the HParams class)."""
    groups: tuple[Group, ...]
    swept: tuple[str, ...]
    """the names that vary (grid values or random draws), in the order they were given."""
    search: dict[str, Any]
    """``{"kind": "grid"}`` or the random search's draws (``kind, n_samples, seed, dist``)."""
    base_seed: int
    num_seeds: int
    lanes: int | None
    """runs per device per compiled call; None for a format-1/2 spec, which did not record it
    (it then runs with :data:`DEFAULT_LANES` and is not promised bitwise)."""
    format: int = FORMAT
    live_config: Any = dataclasses.field(default=None, compare=False, repr=False)
    """the base config object itself, when the spec was built from one in this process: a loss
    given as a function defined in a notebook cannot be rebuilt from its JSON name."""

    # -- what everyone used to recompute from the JSON ------------------------------------

    @property
    def algorithm(self) -> Algorithm:
        return algos.get(self.algo)

    @property
    def num_configs(self) -> int:
        return len(next(iter(self.hparams.values())))

    @property
    def num_runs(self) -> int:
        return self.num_configs * self.num_seeds

    @property
    def run_lanes(self) -> int:
        """The lanes it runs with: its own, or :data:`DEFAULT_LANES` for an old spec."""
        return self.lanes if self.lanes is not None else DEFAULT_LANES

    @property
    def is_grid(self) -> bool:
        return self.search.get("kind", "grid") == "grid"

    def config_values(self) -> list[dict[str, Any]]:
        """Per configuration: its hyperparameters and its group's static overrides."""
        values = [{k: v[i] for k, v in self.hparams.items()} for i in range(self.num_configs)]
        for group in self.groups:
            for i in group.configs:
                values[i] |= group.overrides
        return values

    def base_config(self) -> Any:
        """The base config object (rebuilt from its JSON unless :attr:`live_config`)."""
        if self.live_config is not None:
            return self.live_config
        return self.algorithm.config(**self.config)

    def batched_hparams(self) -> Any:
        """Every configuration's hyperparameters as one batched HParams instance [H]."""
        hparams_cls = self.algorithm.hparams_for(self.base_config())
        return hparams_lib.from_lists(hparams_cls, self.hparams)

    def compiled_groups(self) -> list[tuple[Any, Any, list[int]]]:
        """Per compiled group: (its static config, its batched hparams [H_g], its
        configuration indices)."""
        algorithm = self.algorithm
        out = []
        for group in self.groups:
            if self.live_config is not None:
                config = dataclasses.replace(self.live_config, **group.overrides)
            else:
                config = algorithm.config(**(self.config | group.overrides))
            idx = list(group.configs)
            lists = {k: [v[i] for i in idx] for k, v in self.hparams.items()}
            hparams_cls = algorithm.hparams_for(config)
            out.append((config, hparams_lib.from_lists(hparams_cls, lists), idx))
        return out

    def select(self, config: int, seed: int) -> Spec:
        """The spec of ONE run: configuration index ``config``, seed number ``seed`` (its key
        and its lanes are the sweep's). Raises SpecError naming the valid ranges."""
        last_seed = self.base_seed + self.num_seeds - 1
        if not 0 <= config < self.num_configs:
            raise SpecError(
                f"--config {config}: this run has configurations 0..{self.num_configs - 1}"
            )
        if not self.base_seed <= seed <= last_seed:
            raise SpecError(f"--seed {seed}: this run has seeds {self.base_seed}..{last_seed}")
        group = next(g for g in self.groups if config in g.configs)
        return dataclasses.replace(
            self,
            hparams={k: [v[config]] for k, v in self.hparams.items()},
            groups=(Group(group.overrides, (0,)),),
            base_seed=seed,
            num_seeds=1,
        )

    # -- JSON --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The spec as ``config.json`` records it (the keys its format has, in their order)."""
        out: dict[str, Any] = {
            "format": self.format,
            "algo": self.algo,
            "config": self.config,
            "hparams": {k: list(v) for k, v in self.hparams.items()},
        }
        if self.format >= 2:
            out["groups"] = [
                {"overrides": dict(g.overrides), "configs": list(g.configs)} for g in self.groups
            ]
        out["swept"] = list(self.swept)
        if self.format >= 2:
            out["search"] = dict(self.search)
        out["seeds"] = {"base_seed": self.base_seed, "num_seeds": self.num_seeds}
        if self.format >= 3:
            out["lanes"] = self.lanes
        out["metric_axes"] = list(AXES)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Spec:
        """A spec of any format qlearn has written (``to_json`` gives ``data`` back).

        A hyperparameter or config field the algorithm gained after ``data`` was written
        (PQN's ``loss_index``, DQN's ``head`` and ``v_min``) takes its default (in every
        configuration): defaults that leave the program as it was, so the run it names is
        the same run and a directory written before resumes and reproduces. Where a new
        field's default would change that program, the algorithm's ``legacy_config`` gives
        the value that keeps it (for the config, and as an override of each group whose own
        value differs)."""
        algorithm = algos.get(data["algo"])
        hp = {k: list(v) for k, v in data["hparams"].items()}
        num_configs = len(next(iter(hp.values())))
        defaults = hparams_lib.to_lists(algorithm.hparams())
        hp |= {k: v * num_configs for k, v in defaults.items() if k not in hp}
        stored = dict(data["config"])
        config = stored | algorithm.legacy_config(stored)
        for f in dataclasses.fields(algorithm.config):
            if f.name not in config and f.default is not dataclasses.MISSING:
                config[f.name] = jsonable(f.default)
        groups = data.get("groups") or [{"overrides": {}, "configs": list(range(num_configs))}]
        overrides = []
        for g in groups:
            own = algorithm.legacy_config(stored | dict(g["overrides"]))
            differs = {k: v for k, v in own.items() if v != config.get(k)}
            overrides.append(dict(g["overrides"]) | differs)
        return cls(
            algo=data["algo"],
            config=config,
            hparams=hp,
            groups=tuple(
                Group(o, tuple(g["configs"])) for o, g in zip(overrides, groups, strict=True)
            ),
            swept=tuple(data.get("swept", ())),
            search=dict(data.get("search") or {"kind": "grid"}),
            base_seed=int(data["seeds"]["base_seed"]),
            num_seeds=int(data["seeds"]["num_seeds"]),
            lanes=data.get("lanes"),
            format=int(data.get("format", 1)),
        )


def make_spec(
    config: Any,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    dist: Mapping[str, Any] | None = None,
    n_samples: int | None = None,
    search_seed: int = 0,
    hparams: Any = None,
    seeds: int = 8,
    base_seed: int = 0,
    lanes: int = DEFAULT_LANES,
) -> Spec:
    """The spec of a grid or random search over ``config``'s algorithm, validated: every error
    is raised here, before anything compiles.

    Args:
      config: the algorithm's static config (its type says which algorithm).
      grid: name -> values; hyperparameters share one compile, static config fields make
        separate compiled groups (:func:`qlearn.search.expand`).
      dist: a random search instead: name -> :class:`~qlearn.search.Dist` or text,
        ``"loguniform:1e-5:1e-2"``.
      n_samples: how many configurations the random search draws from ``dist``.
      search_seed: the seed of the random search's draws.
      hparams: values of the hyperparameters neither swept nor sampled (default: defaults).
      seeds: seeds per configuration.
      base_seed: the seed numbering's origin.
      lanes: runs per device per compiled call, part of the runs' identity.
    """
    _check_count("seeds", seeds)
    _check_count("lanes", lanes)
    algorithm = algos.of(config)
    space = search.expand(
        algorithm,
        config,
        grid,
        dist=dist,
        n_samples=n_samples,
        search_seed=search_seed,
        base=hparams,
    )
    return Spec(
        algo=algorithm.name,
        config={f.name: jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)},
        hparams={k: list(v) for k, v in space.hparams.items()},
        groups=tuple(
            Group(
                {k: jsonable(v) for k, v in o.items()},
                tuple(i for i, gi in enumerate(space.group_of) if gi == g),
            )
            for g, o in enumerate(space.overrides)
        ),
        swept=tuple(space.swept),
        search=space.search,
        base_seed=base_seed,
        num_seeds=seeds,
        lanes=lanes,
        live_config=config,
    )
