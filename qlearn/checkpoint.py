"""Checkpointed single runs: save the full training state at evaluation points, resume after
a crash, and end bitwise where an uninterrupted run ends.

The state saved is everything a run carries (parameters, target parameters, optimiser state,
replay buffer, env states, PRNG key, counters) plus the metrics so far, with orbax-checkpoint
(each checkpoint is written to a temporary directory and renamed when complete, so a killed
save leaves the previous checkpoint intact). PRNG keys are stored as their raw key data.

    state, metrics = checkpoint.train(DQNConfig(total_steps=5_000_000), DQNHParams(),
                                      seed=0, directory="ckpt/run0", every=5)

runs ``every`` evaluation intervals per compiled call and checkpoints after each call; run the
same line again after a crash and it continues from the latest checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from qlearn import algos, sweep
from qlearn import hparams as hparams_lib


class CheckpointError(ValueError):
    """A checkpointed run that cannot be started or resumed as asked."""


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_storable(state: Any) -> Any:
    """PRNG key leaves as their uint32 key data (what orbax can store)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)


def from_storable(stored: Any, like: Any) -> Any:
    """Inverse of :func:`to_storable`, given a state (or its shapes) of the same structure
    (keys of the default implementation, as :func:`qlearn.sweep.seed_keys` makes)."""
    return jax.tree.map(
        lambda x, ref: jax.random.wrap_key_data(x) if _is_key(ref) else x, stored, like
    )


def train(
    config: Any,
    hparams: Any,
    *,
    seed: int,
    directory: str | Path,
    every: int,
    max_to_keep: int = 2,
    stop_after: int | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """One run, checkpointed every ``every`` evaluation intervals, resumed if ``directory``
    holds checkpoints of it.

    Args:
      config: the config of an algorithm with ``make_stages`` (DQN).
      hparams: one configuration (scalar leaves).
      seed: the seed number (its key is the sweep's key of that seed).
      directory: where checkpoints go; it also records the run's identity (config, hparams,
        seed), and a different run there is refused.
      every: evaluation intervals per compiled call; must divide ``config.num_evals``.
      stop_after: stop after this many intervals in total (to split a long run over jobs).
      on_checkpoint: called with the number of intervals done after each checkpoint.

    Returns:
      (final state, metrics with a leading time axis [intervals done]).
    """
    make_stages = algos.of(config).make_stages
    if make_stages is None:
        raise CheckpointError(f"{type(config).__name__} runs cannot be checkpointed")
    if every < 1 or config.num_evals % every:
        raise CheckpointError(
            f"every = {every} must be ≥ 1 and divide config.num_evals = {config.num_evals}"
        )
    hparams_lib.validate(hparams)
    directory = _checked_directory(directory)
    identity = {
        "config": repr(config),
        "hparams": hparams_lib.to_lists(hparams),
        "seed": seed,
    }
    with _manager(directory, max_to_keep) as manager:
        init, run_intervals = make_stages(config)
        key = sweep.seed_keys(seed, 1)[0]
        hp = hparams_lib.to_arrays(hparams)
        latest = manager.latest_step()
        if latest is None:
            state, metrics = jax.jit(init)(key, hp), {}
        else:
            state, metrics = _restore(manager, latest, jax.eval_shape(init, key, hp), identity)
        segment = jax.jit(run_intervals, static_argnums=4)
        done = latest or 0
        end = config.num_evals if stop_after is None else min(stop_after, config.num_evals)
        while done < end:
            state, m = segment(key, hp, state, jnp.int32(done), every)
            m = {k: np.asarray(v) for k, v in m.items()}
            metrics = {k: np.concatenate([metrics[k], v]) if metrics else v for k, v in m.items()}
            done += every
            manager.save(
                done,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(to_storable(state)),
                    curves=ocp.args.StandardSave(metrics),
                    identity=ocp.args.JsonSave(identity),
                ),
            )
            if on_checkpoint is not None:
                on_checkpoint(done)
    return state, metrics


def _checked_directory(directory: str | Path) -> Path:
    """``directory`` as an absolute path, refused if it is a file or holds other files."""
    directory = Path(directory).absolute()
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory} is a file, not a checkpoint directory")
    if directory.exists() and any(directory.iterdir()):
        foreign = [p.name for p in directory.iterdir() if not p.name.isdigit()]
        if foreign and not any(p.name.isdigit() for p in directory.iterdir()):
            raise CheckpointError(
                f"{directory} holds other files ({', '.join(sorted(foreign)[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}), not checkpoints of a run: choose "
                "another directory"
            )
    return directory


def _manager(directory: Path, max_to_keep: int) -> ocp.CheckpointManager:
    """An orbax manager of a run's three items: state, curves (metrics so far), identity."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
    )
    handlers = {
        "state": ocp.StandardCheckpointHandler(),
        "curves": ocp.StandardCheckpointHandler(),
        "identity": ocp.JsonCheckpointHandler(),
    }
    return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def _restore(
    manager: ocp.CheckpointManager, step: int, shapes: Any, identity: dict[str, Any]
) -> tuple[Any, dict[str, np.ndarray]]:
    """(state, metrics so far) of checkpoint ``step``; refused unless it is of ``identity``'s
    run. ``shapes``: the state's structure (``jax.eval_shape`` of ``init``)."""
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(jax.eval_shape(to_storable, shapes)),
            curves=ocp.args.StandardRestore(),
            identity=ocp.args.JsonRestore(),
        ),
    )
    if restored["identity"] != identity:
        raise CheckpointError(
            f"{manager.directory} holds checkpoints of another run; choose another directory"
        )
    state = from_storable(restored["state"], shapes)
    return state, {k: np.asarray(v) for k, v in restored["curves"].items()}
