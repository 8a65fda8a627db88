"""What an evaluation point of a deep-Q run measures and reports: the interval's loss
metrics, the greedy evaluation (with the agent's memory where the network carries one) and the
report to a progress callback — shared by every algorithm the driver runs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from qlearn import recurrent
from qlearn.algos import rollout
from qlearn.algos.deep_q import Program, epsilon_schedule

LOSS_METRICS = ("loss", "q_mean", "target_mean", "td_abs", "q_abs_max")


def interval_loss_metrics(m: dict[str, jax.Array], bound: float) -> dict[str, jax.Array]:
    """Reduce the per-update metrics of an interval (leaves [iterations, updates]).

    ``q_abs_max`` is a max, everything else (including a user loss's own metrics) a mean;
    the standard entries a loss does not report are NaN. ``diverged``: a non-finite loss, or
    |Q| above ``bound`` (inf included), in any update of the interval. A NaN ``q_abs_max`` is
    no verdict: it is what a loss that does not report it gets inside a tuple of losses
    (:func:`qlearn.losses.switch`), and a NaN Q makes the loss NaN anyway.
    """
    nan = jnp.full((), jnp.nan)
    out = {k: jnp.max(v) if k == "q_abs_max" else jnp.mean(v) for k, v in m.items()}
    out = {k: out.get(k, nan) for k in LOSS_METRICS} | out
    unstable = ~jnp.isfinite(m["loss"])
    if "q_abs_max" in m:
        unstable |= m["q_abs_max"] > bound
    return out | {"diverged": jnp.any(unstable)}


def evaluate_interval(
    prog: Program,
    hp: Any,
    params: Any,
    loop: Any,
    key: jax.Array,
    updates: dict[str, jax.Array],
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The end of an evaluation interval: the greedy return of ``params`` on fresh envs
    (``key``) and the interval's metrics, with ``loop`` the training envs'
    :class:`~qlearn.algos.sources.EnvLoop` — env_steps, eval_return, train_return,
    train_episodes, epsilon, the loss metrics of :func:`interval_loss_metrics` of the
    per-update metrics ``updates``, and the means over the greedy episodes of what the env
    reports at an episode's end (:func:`qlearn.algos.rollout.evaluate_episodes`: Craftax's
    ``achievement_<name>`` rates and ``achievements``; with ``config.diagnostics`` the greedy
    episodes' ``overestimation``). Returns (eval_return, metrics)."""
    config = prog.config
    gamma = hp.gamma if config.diagnostics else None
    memory = None  # a recurrent network's greedy episodes start from the initial carry
    if prog.recurrent:
        memory = recurrent.initial_memory(prog.network, config.eval_episodes)
    eval_return, ends = rollout.evaluate_episodes(
        prog.q_function(hp),
        params,
        prog.env,
        prog.env_params,
        key,
        config.eval_episodes,
        gamma,
        memory,
    )
    metrics = {
        "env_steps": loop.env_steps,
        "eval_return": eval_return,
        "train_return": rollout.mean_completed_return(loop.episodes),
        "train_episodes": loop.episodes.completed_count,
        **({"epsilon": epsilon_schedule(config, hp)(loop.env_steps)} if prog.explores else {}),
        **interval_loss_metrics(updates, config.divergence_bound),
        **ends,  # what the env reports of its greedy episodes (Craftax's achievements)
    }
    return eval_return, metrics


def key_bits(key: jax.Array) -> jax.Array:
    """A PRNG key's raw uint32 words (a typed key's ``key_data``; a raw key as it is)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def report(
    prog: Program,
    key: jax.Array,
    hp: Any,
    index: jax.Array,
    done: jax.Array,
    eval_return: jax.Array,
    metrics: dict[str, jax.Array],
) -> None:
    """Report evaluation point ``index`` of the run of ``key`` and ``hp`` to ``prog.progress``
    (nothing is compiled without one): ``progress(done, eval_return)``, and where the callable
    ``wants_points``, ``progress(done, eval_return, point)`` with ``point = {"key": key bits,
    "hp": hp, "index": index, "metrics": metrics}``. The callback only reads values the run
    computes anyway, so the run's arithmetic is the same with or without it."""
    if prog.progress is None:
        return
    if getattr(prog.progress, "wants_points", False):
        point = {"key": key_bits(key), "hp": hp, "index": index, "metrics": metrics}
        jax.debug.callback(prog.progress, done, eval_return, point)
    else:
        jax.debug.callback(prog.progress, done, eval_return)
