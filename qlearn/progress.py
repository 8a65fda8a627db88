"""Reports from inside compiled training loops (via ``jax.debug.callback``): a progress bar, and
a clock of the evaluation points."""

from __future__ import annotations

import collections
import time

import numpy as np
from tqdm.auto import tqdm


class ProgressBar:
    """Work done over all runs of a batch (env steps, or episodes), its rate, latest return.

    Pass the instance as ``progress=`` to ``make_train``: it is called from the compiled loop
    with (units done since the last call, latest return) — for DQN once per evaluation
    interval with env steps, for tabular methods once per episode. Under ``jax.vmap`` the
    callback runs once per batch element; the bar sums whatever arrives.
    """

    def __init__(self, total: int, *, num_runs: int, enabled: bool = True, unit: str = "step"):
        self._total = total
        self._unit = unit
        self._enabled = enabled
        self._bar: tqdm | None = None  # opened at the first report, so compilation is not timed
        self._recent = collections.deque(maxlen=max(num_runs, 1))

    def __call__(self, done, latest_return) -> None:
        if self._bar is None:
            self._bar = tqdm(
                total=self._total,
                unit=self._unit,
                unit_scale=True,
                disable=not self._enabled,
                dynamic_ncols=True,
                smoothing=0.1,
            )
        self._recent.extend(np.atleast_1d(np.asarray(latest_return, dtype=np.float64)).tolist())
        self._bar.set_postfix_str(f"return {np.mean(self._recent):.1f}", refresh=False)
        self._bar.update(int(np.sum(done)))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EvalClock:
    """When each evaluation point of one compiled batch of runs finished (wall clock).

    Pass the instance as ``progress=`` to ``make_train`` (or :func:`qlearn.sweep.execute`,
    for a sweep run as one chunk): the compiled loop calls it once per evaluation interval and
    run, and :meth:`seconds` gives, for each evaluation point t, the time at which the last run
    of the batch reported it, from an origin of the caller's choice (e.g. the end of compiling).
    """

    def __init__(self, num_evals: int):
        self.num_evals = num_evals
        self.calls: list[float] = []

    def __call__(self, done, latest_return) -> None:
        self.calls.append(time.perf_counter())

    def seconds(self, origin: float) -> np.ndarray:
        """[num_evals] seconds from ``origin`` (a ``time.perf_counter()`` reading) to each
        evaluation point. Raises ValueError unless the calls form one batch's intervals."""
        calls = np.asarray(self.calls)
        if calls.size == 0 or calls.size % self.num_evals:
            raise ValueError(
                f"{calls.size} calls do not form {self.num_evals} evaluation intervals of one "
                "batch (was the sweep split into chunks?)"
            )
        return calls.reshape(self.num_evals, -1).max(axis=1) - origin
