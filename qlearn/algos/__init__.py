"""Algorithms, each an :class:`~qlearn.algos.algorithm.Algorithm` record (its ``make_train``,
Config and HParams classes and what reports need from its metrics): :func:`get` by name,
:func:`of` by config instance. Entry points resolve the record once and pass it down."""

from __future__ import annotations

from qlearn.algos import dqn, offline, pqn, tabular
from qlearn.algos.algorithm import Algorithm

ALGOS: dict[str, Algorithm] = {
    a.name: a for a in (dqn.ALGORITHM, pqn.ALGORITHM, tabular.ALGORITHM, offline.ALGORITHM)
}


def get(name: str) -> Algorithm:
    """The algorithm called ``name`` (``--algo``, ``spec.algo``)."""
    if name not in ALGOS:
        raise ValueError(f"unknown algorithm '{name}' (known: {', '.join(ALGOS)})")
    return ALGOS[name]


def of(config: object) -> Algorithm:
    """The algorithm whose static config ``config`` is."""
    for algorithm in ALGOS.values():
        if isinstance(config, algorithm.config):
            return algorithm
    raise TypeError(f"{type(config).__name__} is not the config of a known algorithm")
