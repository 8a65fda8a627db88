import time

import jax
import numpy as np
import pytest

from qlearn import progress, sweep
from qlearn.algos import dqn


def test_eval_clock_times_each_evaluation_point_of_a_vmapped_batch(tiny_config):
    clock = progress.EvalClock(tiny_config.num_evals)
    train = jax.jit(jax.vmap(dqn.make_train(tiny_config, progress=clock), in_axes=(0, None)))
    compiled = train.lower(sweep.seed_keys(0, 3), dqn.DQNHParams()).compile()
    start = time.perf_counter()
    jax.block_until_ready(compiled(sweep.seed_keys(0, 3), dqn.DQNHParams()))
    end = time.perf_counter() - start
    seconds = clock.seconds(start)
    assert len(clock.calls) == 3 * tiny_config.num_evals  # once per run and interval
    assert seconds.shape == (tiny_config.num_evals,)
    assert 0 < seconds[0] and np.all(np.diff(seconds) >= 0) and seconds[-1] <= end


def test_eval_clock_refuses_calls_that_are_not_whole_intervals():
    clock = progress.EvalClock(4)
    for _ in range(6):
        clock(1, 0.0)
    with pytest.raises(ValueError, match="6 calls do not form 4 evaluation intervals"):
        clock.seconds(0.0)
