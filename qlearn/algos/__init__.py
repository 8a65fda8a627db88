"""Algorithms. Each module offers ``make_train(config) -> train(key, hparams)`` together with
its static ``Config`` and traced ``HParams`` classes, and what reports need from its metrics:
``learning_curve(metrics)``, ``final_returns(metrics)`` with ``FINAL_STATISTIC`` saying what
they are, and ``progress_total(config)``."""

from __future__ import annotations

from types import ModuleType

from qlearn.algos import dqn, pqn, tabular

ALGOS: dict[str, tuple[ModuleType, type, type]] = {
    "dqn": (dqn, dqn.DQNConfig, dqn.DQNHParams),
    "pqn": (pqn, pqn.PQNConfig, pqn.PQNHParams),
    "tabular": (tabular, tabular.TabularConfig, tabular.TabularHParams),
}


def get(name: str) -> tuple[ModuleType, type, type]:
    """(module, Config class, HParams class) of an algorithm name."""
    if name not in ALGOS:
        raise ValueError(f"unknown algorithm '{name}' (known: {', '.join(ALGOS)})")
    return ALGOS[name]


def name_of(config: object) -> str:
    """The algorithm name of a static config instance."""
    for name, (_, config_cls, _) in ALGOS.items():
        if isinstance(config, config_cls):
            return name
    raise TypeError(f"{type(config).__name__} is not the config of a known algorithm")
