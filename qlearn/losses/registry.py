"""The table of losses: one :class:`LossRecord` per loss — its function, the head it needs,
the batch it takes and the hyperparameters of its own — so a built-in loss is one entry and a
user's loss plugs in the same way (:func:`register`, or a record passed as ``config.loss``).

A record's ``hparams`` is a ``flax.struct`` dataclass of :func:`qlearn.hparams.field` s: a
config naming the loss gets an hyperparameters class with those fields added to the
algorithm's (:func:`declared_hparams`, :func:`qlearn.hparams.extend`), so they are traced,
validated, swept and stored like ``lr``; the loss reads them from its ``hparams`` argument.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from qlearn.types import LossOutput, imported

BATCHES = ("transition", "return")
"""The batch kinds: ``transition`` (replay, :data:`~qlearn.types.LossFn`) and ``return``
(λ-returns, :data:`~qlearn.types.ReturnLossFn`)."""

ARGUMENTS = {
    "transition": ("q_fn", "online_params", "target_params", "batch", "hparams", "key"),
    "return": ("q_fn", "params", "batch", "hparams", "key"),
}
"""The positional arguments a loss of each batch kind is called with."""


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """The static config fields a built-in loss may be specialised by."""

    double_q: bool = True
    munchausen_next_policy: str = "target"
    iqn_target_quantiles: int | None = None
    iqn_action_quantiles: int | None = None
    iqn_shared_levels: bool = False
    value_rescaling: bool = False


@dataclasses.dataclass(frozen=True)
class LossRecord:
    """One loss.

    Attributes:
      name: its name in ``config.loss`` and in stored specs: a user's record named by its own
        import path (``"package.module:ATTRIBUTE"``) is found again in any process, so a run
        directory naming it resumes without :func:`register`.
      make: the config's :class:`LossOptions` -> the loss function (of the batch's contract).
      head: the value head it reads (one of :data:`qlearn.heads.HEADS`), or None for any
        head (it reads what it is given).
      batch: the batch it takes, one of :data:`BATCHES`.
      hparams: a ``flax.struct`` dataclass of the hyperparameters of its own (None: it reads
        only the algorithm's).
      samples: it draws random numbers, so the learner passes it a fresh PRNG key per update
        as its ``key`` argument (the stream ``loss``); else its ``key`` is None.
      summary: one line for ``--help`` and the docs.
    """

    name: str
    make: Callable[[LossOptions], Callable]
    head: str | None = "scalar"
    batch: str = "transition"
    hparams: type | None = None
    samples: bool = False
    summary: str = ""

    def __post_init__(self) -> None:
        if self.batch not in BATCHES:
            raise ValueError(f"loss '{self.name}': batch '{self.batch}' is not one of {BATCHES}")

    @classmethod
    def of(cls, fn: Callable, **fields: Any) -> LossRecord:
        """The record of a fixed function ``fn`` (a user's loss): name ``module:qualname``
        unless given, any head unless given."""
        fields.setdefault("name", f"{fn.__module__}:{fn.__qualname__}")
        fields.setdefault("head", None)
        return cls(make=lambda options: fn, **fields)


TABLE: dict[str, dict[str, LossRecord]] = {batch: {} for batch in BATCHES}
"""batch kind -> name -> record: every loss a config can name."""


def register(record: LossRecord) -> LossRecord:
    """Add ``record`` to :data:`TABLE` (refused if its name is taken): ``config.loss =
    record.name`` then names it in this process. (A record reached by an import path
    ``"package.module:attribute"`` needs no registration, and a run directory that names it
    resumes in any process.)"""
    table = TABLE[record.batch]
    if record.name in table and table[record.name] is not record:
        raise ValueError(f"a {record.batch} loss named '{record.name}' is already registered")
    table[record.name] = record
    return record


def builtin(batch: str) -> tuple[str, ...]:
    """The names of the registered losses of ``batch``."""
    return tuple(TABLE[batch])


def records(spec: Any, batch: str) -> tuple[LossRecord, ...]:
    """The records of the losses a config's ``loss`` spec names: a name, an import path, a
    function, a :class:`LossRecord`, or a tuple of these. Raises ValueError naming the spec
    where it names nothing."""
    if isinstance(spec, tuple | list):
        return tuple(r for s in spec for r in records(s, batch))
    if isinstance(spec, LossRecord):
        if spec.batch != batch:
            raise ValueError(
                f"config.loss = '{spec.name}' takes {spec.batch} batches; this algorithm's "
                f"losses take {batch} batches"
            )
        return (spec,)
    if callable(spec):
        return (LossRecord.of(spec, batch=batch),)
    table = TABLE[batch]
    if spec in table:
        return (table[spec],)
    if isinstance(spec, str) and ":" in spec:
        return records(_imported(spec), batch)
    raise ValueError(
        f"config.loss = '{spec}' is not one of {', '.join(table)} "
        "nor an import path 'package.module:function'"
    )


def _imported(path: str) -> Any:
    """The object an import path ``"package.module:attribute"`` names (a function or a
    record)."""
    found = imported(path, "loss")
    if not callable(found) and not isinstance(found, LossRecord):
        raise ValueError(f"config.loss = '{path}' is not callable")
    return found


def samples(spec: Any, batch: str) -> bool:
    """Whether a loss of ``spec`` samples (:attr:`LossRecord.samples`): the learner then draws
    a key per update for it."""
    return any(record.samples for record in records(spec, batch))


def declared_hparams(spec: Any, batch: str) -> tuple[type, ...]:
    """The hyperparameter classes the losses of ``spec`` declare (each once, in order)."""
    out: list[type] = []
    for record in records(spec, batch):
        if record.hparams is not None and record.hparams not in out:
            out.append(record.hparams)
    return tuple(out)


def check_heads(spec: Any, head: str, batch: str = "transition") -> None:
    """Raise ValueError if a loss named in ``spec`` needs another head than ``head`` (a spec
    that names no loss is left to :func:`resolve_spec` to refuse)."""
    for entry in spec if isinstance(spec, tuple | list) else (spec,):
        try:
            (record,) = records(entry, batch)
        except ValueError:
            continue
        if record.head is not None and record.head != head:
            raise ValueError(
                f"config.loss = '{record.name}' needs config.head = '{record.head}' "
                f"(config.head is '{head}')"
            )


def spec_name(spec: Any) -> Any:
    """A JSON-storable name for a loss spec: the string itself, a record's name,
    'module:qualname' of a function, or a list."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, tuple | list):
        return [spec_name(s) for s in spec]
    if isinstance(spec, LossRecord):
        return spec.name
    return f"{spec.__module__}:{spec.__qualname__}"


def help_text(batch: str, lead: str = "") -> str:
    """The ``config.loss`` help of ``batch``: each registered loss with the head it needs."""
    names = ", ".join(
        f"'{r.name}'" + (f" ({r.head} head)" if r.head not in (None, "scalar") else "")
        for r in TABLE[batch].values()
    )
    return (
        f"{lead}{names}, 'package.module:function', a loss function or record "
        "(qlearn.losses.LossRecord), or a tuple of these (hparam loss_index picks one: losses "
        "compared in one compile)"
    )


def resolve_spec(spec: Any, batch: str, options: LossOptions, switch: Callable) -> Callable:
    """The loss function of ``spec`` with ``options``, its arguments checked now
    (:func:`check_arguments`) and its output when it is traced (:func:`output_of`); a tuple
    becomes ``switch`` over its entries."""
    if isinstance(spec, tuple | list):
        return switch([resolve_spec(s, batch, options, switch) for s in spec])
    (record,) = records(spec, batch)
    fn = record.make(options)
    check_arguments(fn, record.name, batch)

    @functools.wraps(fn)
    def checked(*args: Any) -> LossOutput:
        return output_of(fn(*args), record.name)

    return checked


def check_arguments(fn: Callable, name: str, batch: str) -> None:
    """Raise ValueError naming the loss unless ``fn`` can be called with the positional
    arguments of its batch kind (:data:`ARGUMENTS`)."""
    wanted = ARGUMENTS[batch]
    try:
        inspect.signature(fn).bind(*wanted)
    except TypeError as e:
        raise ValueError(
            f"config.loss = '{name}' must take ({', '.join(wanted)}) and return a "
            f"qlearn.losses.LossOutput: {e}"
        ) from None
    except ValueError:  # no signature to inspect (a builtin or C function): let it run
        pass


def output_of(out: Any, name: str) -> LossOutput:
    """``out`` if it is a :class:`~qlearn.types.LossOutput`; else a TypeError naming the loss
    (a loss of the old contract returned a (loss, aux) tuple)."""
    if not isinstance(out, LossOutput):
        raise TypeError(
            f"loss '{name}' returned {type(out).__name__}; a loss returns "
            "qlearn.losses.LossOutput(loss, metrics, priority)"
        )
    return out


__all__: Sequence[str] = (
    "ARGUMENTS",
    "BATCHES",
    "TABLE",
    "LossOptions",
    "LossRecord",
    "builtin",
    "check_arguments",
    "check_heads",
    "declared_hparams",
    "help_text",
    "output_of",
    "records",
    "register",
    "resolve_spec",
    "samples",
    "spec_name",
)
