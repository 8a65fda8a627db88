"""Reports from inside compiled training loops (via ``jax.debug.callback``): a progress bar, and
a clock of the evaluation points."""

from __future__ import annotations

import collections
import sys
import time
from typing import IO

import numpy as np
from tqdm.auto import tqdm


class ProgressBar:
    """Work done over all runs of a batch (env steps, or episodes), its rate, latest return.

    Pass the instance as ``progress=`` to ``make_train``: it is called from the compiled loop
    with (units done since the last call, latest return) — for DQN once per evaluation
    interval with env steps, for tabular methods once per episode. Under ``jax.vmap`` the
    callback runs once per batch element; the bar sums whatever arrives.

    On a terminal it is a live tqdm bar. When ``stream`` is not a terminal (a CI log, ``| tee``)
    it writes plain lines instead, no escape sequences: one each time another tenth of the
    work is done, and at most one every ``interval`` seconds otherwise.
    """

    def __init__(
        self,
        total: int,
        *,
        num_runs: int,
        enabled: bool = True,
        unit: str = "step",
        stream: IO[str] | None = None,
        interval: float = 60.0,
    ):
        self._total = total
        self._unit = unit
        self._enabled = enabled
        self._stream = sys.stderr if stream is None else stream
        self._live = enabled and self._stream.isatty()
        self._interval = interval
        self._bar: tqdm | None = None  # opened at the first report, so compilation is not timed
        self._recent = collections.deque(maxlen=max(num_runs, 1))
        self._done = 0.0
        self._started: float | None = None
        self._last_line = (0, 0.0)  # (tenths written, time)

    def __call__(self, done, latest_return) -> None:
        now = time.perf_counter()
        if self._started is None:
            self._started = now
            if self._live:
                self._bar = tqdm(
                    total=self._total,
                    unit=self._unit,
                    unit_scale=True,
                    file=self._stream,
                    dynamic_ncols=True,
                    smoothing=0.1,
                )
        self._recent.extend(np.atleast_1d(np.asarray(latest_return, dtype=np.float64)).tolist())
        step = float(np.sum(done))
        self._done += step
        if self._bar is not None:
            self._bar.set_postfix_str(f"return {np.mean(self._recent):.1f}", refresh=False)
            self._bar.update(step)
        elif self._enabled:
            tenths = int(10 * self._done / max(self._total, 1))
            if tenths > self._last_line[0] or now - self._last_line[1] >= self._interval:
                self._line(now)
                self._last_line = (tenths, now)

    def _line(self, now: float) -> None:
        rate = self._done / max(now - self._started, 1e-9)
        print(
            f"progress: {self._done:,.0f} / {self._total:,} {self._unit}s "
            f"({100 * self._done / max(self._total, 1):.0f}%), {rate:,.0f} {self._unit}s/s, "
            f"return {np.mean(self._recent):.1f}",
            file=self._stream,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled and self._started is not None and self._last_line[0] < 10:
            self._line(time.perf_counter())

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
