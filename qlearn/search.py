"""Search spaces: a grid, or random search, over hyperparameters and static config fields.

A *hyperparameter* (a field of the algorithm's ``HParams``) is traced: every value of it runs
in one compiled program. A *static* config field (network width, loss, env) changes the
program, so each of its values is a separate compiled *group*. ``expand`` turns a search space
into the flat list of configurations a sweep runs, ordered static-group-major, and checks every
name and value before anything compiles.

Random search draws ``n_samples`` hyperparameter vectors from per-name distributions with a
seeded numpy generator (``search_seed``), so the same command draws the same configurations.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qlearn import hparams as hparams_lib
from qlearn.types import ConfigError

if TYPE_CHECKING:
    from qlearn.algos.algorithm import Algorithm

DIST_KINDS = ("loguniform", "uniform", "choice")


class SearchError(ValueError):
    """A search space that cannot be run (bad name, empty, non-numeric, bad distribution)."""


@dataclasses.dataclass(frozen=True)
class Dist:
    """A random-search distribution of one hyperparameter.

    ``loguniform``: log x ~ U(log low, log high); ``uniform``: x ~ U(low, high); ``choice``:
    uniform over ``choices``.
    """

    kind: str
    low: float = math.nan
    high: float = math.nan
    choices: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in DIST_KINDS:
            raise SearchError(
                f"unknown distribution '{self.kind}' (known: {', '.join(DIST_KINDS)})"
            )
        if self.kind == "choice":
            if not self.choices:
                raise SearchError("a choice distribution needs at least one value")
            return
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            raise SearchError(
                f"{self.kind} bounds must be finite numbers ({self.low}, {self.high})"
            )
        if not self.low < self.high:
            raise SearchError(f"{self.kind}: low = {self.low:g} must be < high = {self.high:g}")
        if self.kind == "loguniform" and self.low <= 0:
            raise SearchError(f"loguniform: low = {self.low:g} must be > 0")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws, float64 [n]."""
        if self.kind == "choice":
            return np.asarray(self.choices, np.float64)[rng.integers(len(self.choices), size=n)]
        if self.kind == "loguniform":
            return np.exp(rng.uniform(np.log(self.low), np.log(self.high), size=n))
        return rng.uniform(self.low, self.high, size=n)

    def text(self) -> str:
        """The command-line form, e.g. ``loguniform:1e-05:0.01`` (inverse of parse_dist)."""
        if self.kind == "choice":
            return "choice:" + ",".join(f"{c:g}" for c in self.choices)
        return f"{self.kind}:{self.low!r}:{self.high!r}"


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise SearchError(f"'{name}' = {value!r} is not a number") from None
    return float(value)


def parse_dist(text: str) -> Dist:
    """``loguniform:1e-5:1e-2``, ``uniform:0.9:0.999`` or ``choice:1,2,4`` -> :class:`Dist`."""
    kind, _, rest = text.partition(":")
    kind = kind.strip()
    if kind == "choice":
        return Dist("choice", choices=tuple(_number("choice", v) for v in rest.split(",") if v))
    parts = rest.split(":")
    if len(parts) != 2:
        raise SearchError(f"distribution '{text}' must look like {kind or 'KIND'}:LOW:HIGH")
    return Dist(kind, _number("low", parts[0]), _number("high", parts[1]))


@dataclasses.dataclass(frozen=True)
class Space:
    """The configurations of a sweep, flat: configuration i has ``hparams[name][i]`` and the
    static ``overrides[group_of[i]]``; configurations of one group are contiguous."""

    hparams: dict[str, list[float]]
    overrides: list[dict[str, Any]]
    group_of: list[int]
    swept: list[str]
    search: dict[str, Any]

    @property
    def num_configs(self) -> int:
        return len(self.group_of)

    def group_configs(self, group: int) -> list[int]:
        return [i for i, g in enumerate(self.group_of) if g == group]


def _close(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def check_grid_name(config_cls: type, hparams_cls: type, name: str) -> None:
    """Raise :class:`SearchError` unless ``name`` is a hyperparameter or a config field."""
    known = [*hparams_lib.names(hparams_cls), *(f.name for f in dataclasses.fields(config_cls))]
    if name not in known:
        raise SearchError(f"unknown hyperparameter or config field '{name}'{_close(name, known)}")


def expand(
    algorithm: Algorithm,
    config: Any,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    dist: Mapping[str, Dist | str] | None = None,
    n_samples: int | None = None,
    search_seed: int = 0,
    base: Any = None,
) -> Space:
    """Every configuration of a grid or random search, validated.

    Args:
      algorithm: the config's algorithm (its hyperparameter class and checks).
      config: the base static config (a frozen dataclass, validated on construction).
      grid: name -> values. Hyperparameter names are traced (one program for all values);
        config field names are static (one compiled group per value, in grid order).
      dist: hyperparameter name -> :class:`Dist` (or its text): random search.
      n_samples: number of random configurations (per static group); requires ``dist``. In a
        random search, hyperparameter grid entries are drawn uniformly from (``choice``).
      search_seed: seed of the random-search draws.
      base: hyperparameters of the names neither swept nor sampled (default: the defaults);
        an instance of the algorithm's own class leaves a loss's own hyperparameters (see
        :meth:`~qlearn.algos.algorithm.Algorithm.hparams_for`) at their defaults.

    Raises:
      SearchError: unknown names, empty value lists, non-numeric hyperparameters, bad
        distributions; HParamError / ConfigError for out-of-range values.
    """
    hparams_cls = algorithm.hparams_for(config)
    grid = dict(grid or {})
    dist = {k: parse_dist(v) if isinstance(v, str) else v for k, v in (dist or {}).items()}
    _check_inputs(type(config), hparams_cls, grid, dist, n_samples)
    hp_names = hparams_lib.names(hparams_cls)
    static = {k: list(v) for k, v in grid.items() if k not in hp_names}
    traced = {k: [_number(k, x) for x in v] for k, v in grid.items() if k in hp_names}
    combos, search = _combos(traced, dist, n_samples, search_seed)
    overrides = [dict(zip(static, c, strict=True)) for c in itertools.product(*static.values())]
    for o in overrides:  # every static group is a valid config, before anything compiles
        try:
            dataclasses.replace(config, **o)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config with {o}: {e}") from None
    _round_integers(hparams_cls, combos, dist)
    fallback = hparams_cls()  # for the names a base of the algorithm's own class lacks
    base = fallback if base is None else base
    defaults = {n: float(np.asarray(getattr(base, n, getattr(fallback, n)))) for n in hp_names}
    group_of = [g for g in range(len(overrides)) for _ in combos]
    columns = {n: [c.get(n, defaults[n]) for _ in overrides for c in combos] for n in hp_names}
    batched = hparams_cls(
        **{n: np.asarray(v, hparams_lib.dtype_of(hparams_cls, n)) for n, v in columns.items()}
    )
    hparams_lib.validate(batched)
    for g, o in enumerate(overrides):
        idx = [i for i, gi in enumerate(group_of) if gi == g]
        algorithm.validate_hparams(dataclasses.replace(config, **o), take(batched, idx))
    swept = [k for k, v in grid.items() if len(v) > 1] + sorted(dist)
    return Space(hparams_lib.to_lists(batched), overrides, group_of, swept, search)


def _check_inputs(
    config_cls: type,
    hparams_cls: type,
    grid: dict[str, Sequence[Any]],
    dist: dict[str, Dist],
    n_samples: int | None,
) -> None:
    """Raise SearchError for unknown or empty grid entries, sampled names that are not
    hyperparameters (or are also in the grid), and a random search without both parts."""
    hp_names = hparams_lib.names(hparams_cls)
    fields = [f.name for f in dataclasses.fields(config_cls)]
    for name, values in grid.items():
        check_grid_name(config_cls, hparams_cls, name)
        if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
            raise SearchError(f"grid '{name}' is empty: give it at least one value")
    for name in dist:
        if name not in hp_names:
            what = "a static config field" if name in fields else "not a hyperparameter"
            raise SearchError(
                f"'{name}' is {what}: only hyperparameters can be sampled{_close(name, hp_names)}"
            )
        if name in grid:
            raise SearchError(f"'{name}' is both in the grid and sampled: choose one")
    if (n_samples is None) != (not dist):
        raise SearchError("random search needs both a number of samples and distributions")
    if n_samples is not None and n_samples < 1:
        raise SearchError(f"number of random samples = {n_samples} must be ≥ 1")


def _combos(
    traced: dict[str, list[float]],
    dist: dict[str, Dist],
    n_samples: int | None,
    search_seed: int,
) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """(the traced hyperparameters of each configuration of one static group, the search's
    record): the grid's product, or ``n_samples`` draws (grid entries drawn as choices)."""
    if n_samples is None:
        combos = [dict(zip(traced, c, strict=True)) for c in itertools.product(*traced.values())]
        return combos, {"kind": "grid"}
    draws = dict(dist) | {k: Dist("choice", choices=tuple(v)) for k, v in traced.items()}
    rng = np.random.default_rng(search_seed)
    columns = {k: d.sample(rng, n_samples) for k, d in sorted(draws.items())}
    combos = [{k: float(v[i]) for k, v in columns.items()} for i in range(n_samples)]
    search = {
        "kind": "random",
        "n_samples": n_samples,
        "seed": search_seed,
        "dist": {k: d.text() for k, d in sorted(draws.items())},
    }
    return combos, search


def _round_integers(
    hparams_cls: type, combos: list[dict[str, float]], dist: dict[str, Dist]
) -> None:
    """Round drawn integer hyperparameters to the nearest integer (in place); raise
    SearchError for a non-integer value given for one."""
    for n in hparams_lib.names(hparams_cls):
        if hparams_lib.dtype_of(hparams_cls, n) != np.int32:
            continue
        for combo in combos:
            if n in combo and n in dist:
                combo[n] = round(combo[n])  # a drawn integer hyperparameter: nearest integer
            elif n in combo and combo[n] != round(combo[n]):
                raise SearchError(f"hyperparameter '{n}' = {combo[n]:g} must be an integer")


def take(hparams: Any, index: Sequence[int]) -> Any:
    """The configurations ``index`` of a batched hparams instance (numpy leaves)."""
    idx = np.asarray(index, np.int64)
    return type(hparams)(
        **{n: np.asarray(getattr(hparams, n))[idx] for n in hparams_lib.names(type(hparams))}
    )
