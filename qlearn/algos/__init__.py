"""Algorithms. Each module offers ``make_train(config) -> train(key, hparams)`` together with
its static ``Config`` and traced ``HParams`` classes."""

from __future__ import annotations

from types import ModuleType

from qlearn.algos import dqn

ALGOS: dict[str, tuple[ModuleType, type, type]] = {
    "dqn": (dqn, dqn.DQNConfig, dqn.DQNHParams),
}


def get(name: str) -> tuple[ModuleType, type, type]:
    """(module, Config class, HParams class) of an algorithm name."""
    if name not in ALGOS:
        raise ValueError(f"unknown algorithm '{name}' (known: {', '.join(ALGOS)})")
    return ALGOS[name]
