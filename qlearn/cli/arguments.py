"""Command-line text to qlearn's values: ``--hp``/``--cfg``/``--grid``/``--dist``
assignments, parsed and checked before anything compiles (errors name the flag and field)."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from qlearn import hparams as hparams_lib
from qlearn import search


class CLIError(ValueError):
    """A command-line value is not accepted."""


def _parse_assignment(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise CLIError(f"{flag} '{text}' must look like name=value")
    return name.strip(), value.strip()


def parse_hparams(hparams_cls: type, assignments: list[str]) -> dict[str, list[float]]:
    """``["lr=1e-4,3e-4", "gamma=0.99"]`` -> ``{"lr": [1e-4, 3e-4], "gamma": [0.99]}``."""
    grid: dict[str, list[float]] = {}
    for text in assignments:
        name, values = _parse_assignment(text, "--hp")
        grid[name] = [hparams_lib.parse_value(hparams_cls, name, v) for v in values.split(",")]
    return grid


def _number(text: str) -> int | float | str:
    """'20' -> 20, '0.5' -> 0.5, anything else stays a string."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text.strip()


def _parse_config_value(field: dataclasses.Field, text: str) -> Any:
    kind = str(field.type)
    try:
        if kind.startswith("tuple[tuple"):  # name:value pairs, e.g. n_states:20,seed:3
            pairs = [item.split(":", 1) for item in text.split(",") if item.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError
            return tuple((k.strip(), _number(v)) for k, v in pairs)
        if kind.startswith("tuple[str"):  # import paths, e.g. my_module:fn,other:g
            return tuple(x.strip() for x in text.split(",") if x.strip())
        if kind.startswith("tuple"):
            return tuple(int(x) for x in text.split(",") if x.strip())
        if kind.startswith("bool"):
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if text.lower() == "none" and "None" in kind:
            return None
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise CLIError(f"config.{field.name} = '{text}' is not a valid {kind}") from None
    return text


def parse_config(config_cls: type, assignments: list[str], **given: Any) -> Any:
    """Build a config from ``name=value`` strings plus keyword values (validated on creation)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values = {k: v for k, v in given.items() if v is not None}
    for name in set(values) - set(fields):
        raise CLIError(f"this algorithm has no {name.replace('_', '-')} (its config has no {name})")
    for text in assignments:
        name, value = _parse_assignment(text, "--cfg")
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise CLIError(f"unknown config field '{name}'{hint}")
        values[name] = _parse_config_value(fields[name], value)
    return config_cls(**values)


def parse_grid(config_cls: type, hparams_cls: type, assignments: list[str]) -> dict[str, list]:
    """``--grid`` values: ``lr=1e-4,3e-4`` (a hyperparameter: traced, one compile) or
    ``hidden_sizes=64,128x128`` (a static config field: one compiled group per value; tuple
    values join their elements with ``x``)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    grid: dict[str, list] = {}
    for text in assignments:
        name, values = _parse_assignment(text, "--grid")
        search.check_grid_name(config_cls, hparams_cls, name)
        if name in grid:
            raise CLIError(f"--grid {name} is given twice: list its values once, comma-separated")
        items = [v.strip() for v in values.split(",")]
        if name in fields:
            sep = "x" if str(fields[name].type).startswith("tuple[int") else None
            grid[name] = [
                _parse_config_value(fields[name], v.replace(sep, ",") if sep else v) for v in items
            ]
        else:
            grid[name] = [hparams_lib.parse_value(hparams_cls, name, v) for v in items]
    return grid


def parse_dists(hparams_cls: type, assignments: list[str]) -> dict[str, search.Dist]:
    """``--dist lr=loguniform:1e-5:1e-2`` -> {"lr": Dist}."""
    out = {}
    for text in assignments:
        name, value = _parse_assignment(text, "--dist")
        hparams_lib.check_name(hparams_cls, name)
        out[name] = search.parse_dist(value)
    return out


def check_lanes(lanes: int) -> None:
    """Raise CLIError unless ``--lanes`` is ≥ 1."""
    if lanes < 1:
        raise CLIError(f"--lanes = {lanes} must be ≥ 1")
