"""Reports from inside compiled training loops (via ``jax.debug.callback``): a progress bar, and
a clock of the evaluation points."""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import numpy as np
from tqdm.auto import tqdm


class ProgressBar:
    """Work done over all runs of a batch (env steps, or episodes), its rate, latest return.

    Pass the instance as ``progress=`` to ``make_train``: it is called from the compiled loop
    with (units done since the last call, latest return) — for DQN once per evaluation
    interval with env steps, for tabular methods once per block of episodes. Under ``jax.vmap`` the
    callback runs once per batch element; the bar sums whatever arrives.

    On a terminal it is a live tqdm bar. When ``stream`` is not a terminal (a CI log, ``| tee``)
    it writes plain lines instead, no escape sequences: one each time another tenth of the
    work is done, and at most one every ``interval`` seconds otherwise.

    The rate is units per second of running: call :meth:`start` when the compiled work begins
    and :meth:`stop` when it pauses (to compile the next program), as :func:`qlearn.sweep.run`
    does, and it is exact. Without :meth:`start`, the clock starts at the first report, whose
    own units are then left out of the rate: they were done before the clock ran (counting
    them gave rates of millions of steps per second, as the runs of a vmapped batch report
    one interval each at the same moment).
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
        self._untimed = 0.0  # units done before the clock first ran (left out of the rate)
        self._seconds = 0.0  # running time before the current start
        self._since: float | None = None  # when the clock (re)started; None while stopped
        self._started = False
        self._last_line = (0, 0.0)  # (tenths written, time)

    def start(self) -> None:
        """The compiled work begins (or resumes) now: running time counts from here."""
        now = time.perf_counter()
        if self._since is None:
            self._since = now
        if not self._started:
            self._started = True
            if self._live:
                self._bar = tqdm(
                    total=self._total,
                    initial=self._done,
                    unit=self._unit,
                    unit_scale=True,
                    file=self._stream,
                    dynamic_ncols=True,
                    smoothing=0.1,
                )

    def stop(self) -> None:
        """The work pauses (e.g. to compile): time until the next :meth:`start` is not run."""
        if self._since is not None:
            self._seconds += time.perf_counter() - self._since
            self._since = None

    def rate(self) -> float | None:
        """Units per second of running time, None before any running time was measured."""
        running = 0.0 if self._since is None else time.perf_counter() - self._since
        seconds = self._seconds + running
        timed = self._done - self._untimed
        return timed / seconds if seconds > 0 and timed > 0 else None

    def __call__(self, done, latest_return) -> None:
        now = time.perf_counter()
        step = float(np.sum(done))
        if not self._started:  # nobody started the clock: it starts now, after this report
            self._untimed = step
            self._done = step
            self.start()
            step = 0.0
        self._recent.extend(np.atleast_1d(np.asarray(latest_return, dtype=np.float64)).tolist())
        self._done += step
        if self._bar is not None:
            self._bar.set_postfix_str(f"return {np.mean(self._recent):.1f}", refresh=False)
            self._bar.update(step)
        elif self._enabled:
            tenths = int(10 * self._done / max(self._total, 1))
            if tenths > self._last_line[0] or now - self._last_line[1] >= self._interval:
                self._line()
                self._last_line = (tenths, now)

    def _line(self) -> None:
        rate = self.rate()
        speed = f"{rate:,.0f} {self._unit}s/s" if rate is not None else f"… {self._unit}s/s"
        print(
            f"progress: {self._done:,.0f} / {self._total:,} {self._unit}s "
            f"({100 * self._done / max(self._total, 1):.0f}%), {speed}, "
            f"return {np.mean(self._recent):.1f}",
            file=self._stream,
            flush=True,
        )

    def close(self) -> None:
        self.stop()
        if self._bar is not None:
            self._bar.close()
        elif self._enabled and self._started and self._last_line[0] < 10:
            self._line()

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


class Reports:
    """What the compiled loops report to: progress (``progress(done, latest_return)``), scaled
    by the share of the chunk's lanes that hold real runs (padding lanes repeat a run: their
    work is not progress), and each evaluation point to the live trackers
    (:class:`qlearn.trackers.Live`), which alone make the loops send the points."""

    def __init__(self, progress: Callable | None, live: Any = None):
        self.progress = progress
        self.live = live
        self.wants_points = live is not None
        self.share = 1.0

    def __call__(self, done: Any, latest_return: Any, point: Any = None) -> None:
        if self.progress is not None:
            self.progress(np.asarray(done) * self.share, latest_return)
        if self.live is not None and point is not None:
            self.live(point)
