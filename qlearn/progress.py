"""A progress bar fed from inside compiled training loops (via ``jax.debug.callback``)."""

from __future__ import annotations

import collections

import numpy as np
from tqdm.auto import tqdm


class ProgressBar:
    """Env steps done over all runs of a batch, env steps per second, latest mean return.

    Pass the instance as ``progress=`` to ``make_train``: it is called once per evaluation
    interval and run with (env steps in the interval, greedy return). Under ``jax.vmap`` the
    callback runs once per batch element; the bar sums whatever arrives.
    """

    def __init__(self, total_env_steps: int, *, num_runs: int, enabled: bool = True):
        self._total = total_env_steps
        self._enabled = enabled
        self._bar: tqdm | None = None  # opened at the first report, so compilation is not timed
        self._recent = collections.deque(maxlen=max(num_runs, 1))

    def __call__(self, env_steps, eval_return) -> None:
        if self._bar is None:
            self._bar = tqdm(
                total=self._total,
                unit="step",
                unit_scale=True,
                disable=not self._enabled,
                dynamic_ncols=True,
                smoothing=0.1,
            )
        self._recent.extend(np.atleast_1d(np.asarray(eval_return, dtype=np.float64)).tolist())
        self._bar.set_postfix_str(f"return {np.mean(self._recent):.1f}", refresh=False)
        self._bar.update(int(np.sum(env_steps)))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
