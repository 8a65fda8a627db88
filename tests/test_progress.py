import io
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


def test_a_sweeps_progress_counts_real_runs_not_padding_lanes(tiny_config):
    """3 runs in chunks of 2 lanes: the last chunk's padding lane does work that is no progress
    (before, 4 runs' worth of env steps were reported for 3)."""
    reports = []
    sweep.run(tiny_config, seeds=3, lanes=2, progress=lambda done, ret: reports.append(done))
    assert float(np.sum(reports)) == 3 * tiny_config.actual_total_steps


def test_off_a_terminal_the_bar_writes_a_few_plain_lines():
    stream = io.StringIO()  # not a terminal
    bar = progress.ProgressBar(1_000, num_runs=2, stream=stream, interval=3600)
    for _ in range(100):
        bar(np.array([5, 5]), np.array([1.0, 3.0]))
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    assert 10 <= len(lines) <= 11 and all(line.startswith("progress: ") for line in lines)
    assert lines[-1].startswith("progress: 1,000 / 1,000 steps (100%)")
    assert "return 2.0" in lines[-1]


def test_a_sweeps_progress_rate_is_its_running_rate(tiny_config, capsys):
    """The rate on the last line is the runs' env steps over the running time the sweep
    records (compiling excluded). Before, the clock started at the first report and that
    report's steps were counted: a vmapped batch's first interval arrives all at once, which
    printed rates of millions of steps per second."""
    run = sweep.run(tiny_config, seeds=3, progress=True)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("progress: ")]
    rate = float(lines[-1].split(", ")[1].split()[0].replace(",", ""))
    expected = 3 * tiny_config.actual_total_steps / run.summary["timing"]["run_seconds"]
    assert lines[-1].startswith(f"progress: {3 * tiny_config.actual_total_steps:,} /")
    assert rate == pytest.approx(expected, rel=0.25)


def test_without_start_the_first_report_is_left_out_of_the_rate():
    stream = io.StringIO()
    bar = progress.ProgressBar(1_000, num_runs=1, stream=stream, interval=0.0)
    bar(np.array(500), 1.0)  # done before anyone started the clock: no rate yet
    time.sleep(0.2)
    bar(np.array(100), 1.0)
    first, second = stream.getvalue().splitlines()
    assert first.startswith("progress: 500 / 1,000 steps (50%), … steps/s")
    rate = float(second.split(", ")[1].split()[0].replace(",", ""))
    assert 100 / 0.4 < rate <= 100 / 0.2  # 100 steps in ≥ 0.2 s (not 600 steps)
