"""The algorithm contract: what qlearn's generic modules (sweep, runs, checkpoint, cli) may know
about an algorithm, as one typed record.

Each algorithm module ends with ``ALGORITHM = Algorithm(...)``; :func:`qlearn.algos.get` (by
name) and :func:`qlearn.algos.of` (by config instance) return it. Every optional capability is
a field with a stated default, so no caller probes a module with ``hasattr`` and no generic
module names one algorithm's config fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from qlearn import hparams as hparams_lib

Metrics = dict[str, np.ndarray]


def _no_checks(config: Any, hparams: Any) -> None:
    """The default of :attr:`Algorithm.validate_hparams`: nothing to check."""


def _no_extra_hparams(config: Any) -> tuple[type, ...]:
    """The default of :attr:`Algorithm.extra_hparams`: none."""
    return ()


def _no_legacy(config: dict[str, Any]) -> dict[str, Any]:
    """The default of :attr:`Algorithm.legacy_config`: every field's default keeps the
    program of a config written before the field existed."""
    return {}


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One algorithm, as the rest of qlearn sees it."""

    name: str
    """the name of ``--algo`` and of ``spec.algo``."""
    config: type
    """its static, hashable config class (a frozen dataclass)."""
    hparams: type
    """its traced hyperparameters class (a ``flax.struct`` dataclass of scalars)."""
    make_train: Callable[..., Callable]
    """``make_train(config, *, progress=None) -> train(key, hparams) -> (state, metrics)``."""
    learning_curve: Callable[[Metrics], tuple[np.ndarray, np.ndarray, str, str]]
    """batched metrics [H, S, T] -> (x [T], returns [H, S, T], x label, y label), for figures."""
    final_returns: Callable[[Metrics], np.ndarray]
    """batched metrics -> the number per run [H, S] that summaries report."""
    final_statistic: str
    """what :attr:`final_returns` is, in words (summary.json's ``statistic``)."""
    progress_total: Callable[[Any], tuple[int, str]]
    """config -> (units one run reports to ``progress`` in all, the unit's name)."""
    validate_hparams: Callable[[Any, Any], None] = _no_checks
    """``(config, batched hparams)``: raise before anything compiles if they do not fit."""
    make_stages: Callable[..., tuple[Callable, Callable]] | None = None
    """``make_stages(config) -> (init, run_intervals)``, the resumable form of ``train`` that
    :mod:`qlearn.checkpoint` needs; None: the algorithm cannot be checkpointed."""
    indexed_hparams: tuple[tuple[str, str], ...] = ()
    """(hyperparameter, config field) pairs: an integer hyperparameter that picks an entry of
    a tuple-valued config field (``loss_index`` picks from ``loss``). Reports show the entry,
    not its position, and never treat it as a numeric axis."""
    title_field: str | None = None
    """a config field whose value names a run better than :attr:`name` in figure titles
    (tabular: ``algorithm``)."""
    legacy_config: Callable[[dict[str, Any]], dict[str, Any]] = _no_legacy
    """stored config values (JSON form: a spec's config, merged with one group's overrides)
    -> values of config fields added since, where the field's default would NOT keep the
    program such a spec names (DQN's ``munchausen_next_policy``); :meth:`qlearn.spec.Spec.
    from_json` applies them so that an old run directory resumes and reproduces."""

    extra_hparams: Callable[[Any], tuple[type, ...]] = _no_extra_hparams
    """config -> the hyperparameter classes its parts declare beyond :attr:`hparams` (a
    user's loss with hyperparameters of its own); see :meth:`hparams_for`."""

    def hparams_for(self, config: Any) -> type:
        """The hyperparameters class of runs of ``config``: :attr:`hparams`, with the fields
        of :attr:`extra_hparams` appended (:func:`qlearn.hparams.extend`)."""
        return hparams_lib.extend(self.hparams, self.extra_hparams(config))

    def title(self, config: dict[str, Any]) -> str:
        """The algorithm's name in figures, given a spec's config values."""
        value = config.get(self.title_field) if self.title_field else None
        return str(value if value is not None else self.name).replace("_", " ")

    def indexed_field(self, hparam: str) -> str | None:
        """The config field that ``hparam`` indexes into, or None."""
        return dict(self.indexed_hparams).get(hparam)
