"""Hyperparameters: pytrees of numbers, declared with their valid ranges.

An algorithm declares its hyperparameters as a ``flax.struct.dataclass`` whose fields are made
with :func:`field`. Every field is a pytree leaf, so a batch of hyperparameters (leaves of shape
[H]) is ``jax.vmap``-ed over and a sweep compiles once. The metadata on each field (range,
integer or not, help text) is the one source for validation, the CLI's ``--hp`` parsing and
its help.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct


class HParamError(ValueError):
    """A hyperparameter name or value is not accepted."""


@dataclasses.dataclass(frozen=True)
class Range:
    """The accepted interval of a hyperparameter."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def contains(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return bool(above and below)

    def __str__(self) -> str:
        lo = f"{'(' if self.low_open else '['}{self.low:g}"
        hi = f"{self.high:g}{')' if self.high_open else ']'}"
        return f"{lo}, {hi}"


def field(
    default: float,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    help: str = "",
) -> Any:
    """A hyperparameter field: a traced pytree leaf with a range and a help text."""
    return struct.field(
        pytree_node=True,
        default=default,
        metadata={
            "range": Range(low, high, low_open, high_open),
            "integer": integer,
            "help": help,
        },
    )


def names(cls: type) -> tuple[str, ...]:
    """The hyperparameter names of an hparams class, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls))


def dtype_of(cls: type, name: str) -> np.dtype:
    """int32 for integer hyperparameters, float32 for the rest."""
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    return np.dtype(np.int32 if meta.get("integer") else np.float32)


def check_name(cls: type, name: str) -> None:
    """Raise :class:`HParamError` for an unknown name, listing close matches."""
    known = names(cls)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise HParamError(f"unknown hyperparameter '{name}'{hint} (known: {', '.join(known)})")


def validate(hparams: Any) -> None:
    """Check every value of a (possibly batched) hparams instance against its field's range.

    Runs on concrete values, before anything compiles. Raises :class:`HParamError` naming the
    field, the offending value and the accepted range.
    """
    for f in dataclasses.fields(hparams):
        values = np.atleast_1d(np.asarray(getattr(hparams, f.name), dtype=np.float64))
        rng: Range = f.metadata["range"]
        for v in values.ravel():
            if not np.isfinite(v) and not (np.isinf(v) and rng.contains(v)):
                raise HParamError(f"hyperparameter '{f.name}' = {v} is not a finite number")
            if not rng.contains(v):
                raise HParamError(f"hyperparameter '{f.name}' = {v:g} is outside its range {rng}")
            if f.metadata["integer"] and v != round(v):
                raise HParamError(f"hyperparameter '{f.name}' = {v:g} must be an integer")


def parse_value(cls: type, name: str, text: str) -> float:
    """Parse one CLI value for ``name`` (e.g. ``"3e-4"``), naming the field on failure."""
    check_name(cls, name)
    try:
        value = float(text)
    except ValueError:
        raise HParamError(f"hyperparameter '{name}' = '{text}' is not a number") from None
    if dtype_of(cls, name) == np.int32:
        if value != round(value):
            raise HParamError(f"hyperparameter '{name}' = {text} must be an integer")
        return round(value)
    return value


def grid(cls: type, values: Mapping[str, Sequence[float]], base: Any = None) -> Any:
    """The Cartesian product of ``values`` as ONE batched hparams instance.

    Args:
      cls: the hparams dataclass.
      values: name -> list of values; names not given take ``base``'s (or the default) value.
      base: an instance of ``cls`` holding the values of the names not swept.

    Returns:
      An instance of ``cls`` whose leaves have shape [H], H = ∏ len(values[name]), ordered
      like ``itertools.product`` over ``values`` in insertion order (last name fastest).
    """
    base = cls() if base is None else base
    for name in values:
        check_name(cls, name)
    combos = list(itertools.product(*values.values())) or [()]
    columns: dict[str, list[float]] = {n: [] for n in names(cls)}
    for combo in combos:
        chosen = dict(zip(values.keys(), combo, strict=True))
        for n in names(cls):
            columns[n].append(chosen.get(n, getattr(base, n)))
    hparams = cls(**{n: np.asarray(v, dtype_of(cls, n)) for n, v in columns.items()})
    validate(hparams)
    return hparams


def to_arrays(hparams: Any) -> Any:
    """Every leaf as a jax array of its declared dtype (float32 or int32)."""
    cls = type(hparams)
    return cls(**{n: jnp.asarray(getattr(hparams, n), dtype_of(cls, n)) for n in names(cls)})


def _shortest(value: np.generic) -> int | float | bool:
    """A scalar as the shortest Python number that rounds back to it in its own dtype: a
    float32 3e-4 is 0.0003 (as the user wrote it), not 0.0003000000142492354."""
    if isinstance(value, np.floating):
        return float(np.format_float_positional(value, unique=True, trim="0"))
    return value.item()


def to_lists(hparams: Any) -> dict[str, list[float]]:
    """A batched hparams instance as JSON-ready lists, one entry per configuration; each value
    the shortest decimal that is exactly the stored float32 (see :func:`from_lists`)."""
    out = {}
    for n in names(type(hparams)):
        arr = np.atleast_1d(np.asarray(getattr(hparams, n)))
        out[n] = [_shortest(v) for v in arr]
    return out


def from_lists(cls: type, lists: Mapping[str, Sequence[float]]) -> Any:
    """Inverse of :func:`to_lists`: exact, since the shortest decimal of a float32 rounds back
    to it."""
    return cls(**{n: np.asarray(lists[n], dtype_of(cls, n)) for n in names(cls)})


def describe(cls: type) -> str:
    """One line per hyperparameter: name, default, range, help (for ``--help``)."""
    lines = []
    for f in dataclasses.fields(cls):
        lines.append(
            f"  {f.name:<20} default {f.default:<8g} range {f.metadata['range']}  "
            f"{f.metadata['help']}"
        )
    return "\n".join(lines)


@functools.cache
def extend(base: type, extras: tuple[type, ...]) -> type:
    """``base``'s hyperparameters class with the fields of each class of ``extras`` appended
    (a loss's own hyperparameters, :func:`qlearn.losses.declared_hparams`): ``base`` itself
    when ``extras`` is empty. One class per (base, extras), so equal configs get the same
    class. Raises :class:`HParamError` where an extra field's name is taken."""
    if not extras:
        return base
    fields = [(f.name, f.type, _copy(f)) for f in dataclasses.fields(base)]
    for extra in extras:
        for f in dataclasses.fields(extra):
            if f.name in {name for name, _, _ in fields}:
                raise HParamError(
                    f"hyperparameter '{f.name}' of {extra.__name__} is already one of "
                    f"{base.__name__}'s (or of another extension's)"
                )
            fields.append((f.name, f.type, _copy(f)))
    name = base.__name__ + "".join("_" + e.__name__ for e in extras)
    namespace = {"__annotations__": {n: t for n, t, _ in fields}, "__module__": base.__module__}
    namespace |= {n: f for n, _, f in fields}
    return struct.dataclass(type(name, (), namespace))


def _copy(f: dataclasses.Field) -> Any:
    """A fresh field with ``f``'s default and metadata (a Field belongs to one class)."""
    return struct.field(pytree_node=True, default=f.default, metadata=dict(f.metadata))


def table_field(table: Mapping[str, Mapping[str, Any]], name: str, **changes: Any) -> Any:
    """The hyperparameter ``name`` of a module's ``table`` (name -> :func:`field` keywords,
    ``default`` among them), with ``changes``: the part that reads a hyperparameter declares
    it once, and each hyperparameters class lists the ones it has, in its own order."""
    kwargs = dict(table[name]) | changes
    return field(kwargs.pop("default"), **kwargs)
