"""A progress bar fed from inside compiled training loops (via ``jax.debug.callback``)."""

from __future__ import annotations

import collections

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
