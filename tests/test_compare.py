"""qlearn compare: rliable's aggregates over tasks (tested against rliable on the same
arrays), the per-task normalisation, the report, and bad input in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY
from rliable import library as rly
from rliable import metrics as rly_metrics

from qlearn import compare, runs, stats
from qlearn.algos import dqn
from qlearn.cli import main
from qlearn.spec import make_spec

RNG = np.random.default_rng(0)
SCORES = {  # [runs, tasks], shaped as rliable takes them
    "a": RNG.uniform(0.0, 1.2, (10, 3)),
    "b": RNG.uniform(0.2, 0.9, (10, 3)),
}


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (stats.aggregate_iqm, rly_metrics.aggregate_iqm),
        (stats.aggregate_median, rly_metrics.aggregate_median),
        (stats.aggregate_mean, rly_metrics.aggregate_mean),
        (stats.optimality_gap, rly_metrics.aggregate_optimality_gap),
    ],
)
def test_aggregates_equal_rliables(ours, theirs):
    for x in SCORES.values():
        assert float(ours(x)) == pytest.approx(theirs(x), rel=1e-12)


def test_stratified_bootstrap_cis_match_rliables():
    """The report's CIs (compare.aggregate, on tasks whose normalisation is the identity)
    against rliable's on the same scores: same statistics, same stratified bootstrap,
    different RNGs, so they agree to Monte-Carlo error (here < 0.02 on scores of spread ≈ 1)."""

    def four(x):
        return np.array([f(x) for f in stats.TASK_AGGREGATES.values()])

    _, theirs = rly.get_interval_estimates(SCORES, four, reps=5000)
    tasks = [
        compare.Task(f"task{j}", {m: x[:, j] for m, x in SCORES.items()}, {}, 0.0, 1.0)
        for j in range(3)
    ]
    ours = compare.aggregate(tasks, list(SCORES), n_resamples=5000)
    for method, x in SCORES.items():
        np.testing.assert_array_equal(ours["scores"][method], x)
        for i, (name, fn) in enumerate(stats.TASK_AGGREGATES.items()):
            entry = ours["methods"][method][name]
            assert entry["value"] == pytest.approx(float(fn(x)))
            assert entry["ci95"][0] == pytest.approx(theirs[method][0, i], abs=0.02)
            assert entry["ci95"][1] == pytest.approx(theirs[method][1, i], abs=0.02)
            assert entry["ci95"][0] <= entry["value"] <= entry["ci95"][1]


def test_performance_profile_and_improvement_equal_rliables():
    taus = np.linspace(0, 1.2, 13)
    profiles, _ = rly.create_performance_profile(SCORES, taus, reps=100)
    for method, x in SCORES.items():
        np.testing.assert_allclose(stats.score_distribution(x, taus), profiles[method])
    theirs = rly_metrics.probability_of_improvement(SCORES["a"], SCORES["b"])
    assert float(stats.task_probability_of_improvement(SCORES["a"], SCORES["b"])) == (
        pytest.approx(theirs)
    )


def test_stratified_resamples_stay_within_each_task():
    x = np.arange(12.0).reshape(4, 3)  # task j holds 3·i + j
    r = stats.stratified_resamples(x, 50, np.random.default_rng(1))
    assert r.shape == (50, 4, 3)
    np.testing.assert_array_equal(r % 3, np.broadcast_to(np.arange(3), r.shape))


# -- the report over run directories ------------------------------------------------------


def fake_run(path, env_id, finals, *, lrs=(1e-3, 3e-3), diverged=None, dormant=None):
    """A finished run directory of DQN on ``env_id``: configurations lr ∈ ``lrs``, final
    greedy returns ``finals`` [config, seed] (a flat curve up to them); with ``dormant``
    [config, seed], a run with diagnostics whose dormant fraction ends there (and srank 3)."""
    finals = np.asarray(finals, np.float32)
    config = dqn.DQNConfig(**(TINY | {"env_id": env_id}))
    spec = make_spec(config, {"lr": list(lrs)}, seeds=finals.shape[1])
    t = config.num_evals
    metrics = {
        "env_steps": np.broadcast_to(
            np.arange(1, t + 1, dtype=np.int32) * 500, (*finals.shape, t)
        ).copy(),
        "eval_return": np.repeat(finals[..., None], t, axis=-1),
        "diverged": np.zeros((*finals.shape, t), bool),
    }
    if diverged is not None:
        metrics["diverged"][(*diverged, slice(t - 1, None))] = True
    if dormant is not None:
        metrics["dormant"] = np.repeat(np.asarray(dormant, np.float32)[..., None], t, axis=-1)
        metrics["srank"] = np.full((*finals.shape, t), 3.0, np.float32)
        metrics["dormant_layer0"] = metrics["dormant"]  # per layer: metrics.npz only
    return runs.write(path, spec, metrics)


def test_diagnostics_reach_the_summary_and_the_comparison(tmp_path):
    """A run with diagnostics: each configuration's summary has the headline diagnostics'
    statistics at the last evaluation (not the per-layer ones); ``qlearn compare`` reports
    their IQM per method and task, in compare.json and table.md; a run without them has
    neither."""
    dormant = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]]
    finals = [[500, 400, 450, 480], [100, 200, 150, 120]]
    run = fake_run(tmp_path / "d", "CartPole-v1", finals, dormant=dormant)
    rows = run.summary["configs"]
    assert set(rows[0]["diagnostics"]) == {"dormant", "srank"}
    assert rows[0]["diagnostics"]["dormant"]["iqm"] == pytest.approx(0.25)
    assert rows[1]["diagnostics"]["srank"]["iqm"] == 3.0
    result = compare.compare([run.path], tmp_path / "out")
    measured = result["tasks"]["CartPole-v1"]["diagnostics"]
    assert measured["dqn lr=0.001"]["dormant"]["iqm"] == pytest.approx(0.25)
    assert measured["dqn lr=0.003"]["dormant"]["iqm"] == pytest.approx(0.5)
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| dormant | 0.25 [" in table and "dormant_layer0" not in table
    plain = fake_run(tmp_path / "p", "CartPole-v1", finals)
    assert "diagnostics" not in plain.summary["configs"][0]
    assert "Diagnostics" not in compare.markdown_table(
        compare.compare([plain.path], tmp_path / "out2"), ["dqn lr=0.001"]
    )


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    cart = fake_run(base / "cart", "CartPole-v1", [[500, 400, 450, 480], [100, 200, 150, 120]])
    catch = fake_run(
        base / "catch", "Catch-bsuite", [[1, 1, 0.6, 1], [-1, 0.2, -0.6, 1]], diverged=(1, 2)
    )
    return base, cart, catch


def test_compare_normalises_by_random_and_reference_and_writes_the_report(two_tasks):
    base, cart, catch = two_tasks
    out = base / "report"
    result = compare.compare([cart.path, catch.path], out)
    tasks = result["tasks"]
    random_cart, random_catch = tasks["CartPole-v1"]["random"], tasks["Catch-bsuite"]["random"]
    assert 15 < random_cart < 30  # the uniformly random policy on CartPole: ≈ 22
    assert -1 < random_catch < -0.4  # ≈ -0.6: a random paddle catches one ball in five
    assert tasks["CartPole-v1"]["reference"] == 500 and tasks["Catch-bsuite"]["reference"] == 1
    methods = ["dqn lr=0.001", "dqn lr=0.003"]
    assert list(result["methods"]) == methods
    cart_final = cart.spec.algorithm.final_returns(cart.metrics).astype(np.float64)
    catch_final = catch.spec.algorithm.final_returns(catch.metrics).astype(np.float64)
    for c, m in enumerate(methods):
        x = np.stack(
            [
                (cart_final[c] - random_cart) / (500 - random_cart),
                np.nan_to_num((catch_final[c] - random_catch) / (1 - random_catch), nan=0.0),
            ],
            axis=1,
        )
        np.testing.assert_allclose(result["scores"][m], x)
        assert result["methods"][m]["iqm"]["value"] == pytest.approx(stats.aggregate_iqm(x))
        low, high = result["methods"][m]["iqm"]["ci95"]
        assert low <= result["methods"][m]["iqm"]["value"] <= high
    assert result["methods"]["dqn lr=0.003"]["diverged"] == 1  # counted as the random policy
    assert result["improvement"]["dqn lr=0.001 > dqn lr=0.003"]["value"] > 0.9
    assert json.loads((out / "compare.json").read_text()) == json.loads(json.dumps(result))
    for name in ("aggregates", "profiles", "improvement"):
        assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.pdf").exists()
    table = (out / "table.md").read_text()
    assert "| dqn lr=0.001 | 4 |" in table and "Catch-bsuite" in table


def test_compare_from_the_command_line_with_a_given_reference(two_tasks, capsys):
    base, cart, catch = two_tasks
    out = base / "cli-report"
    argv = ["compare", str(cart.path), str(catch.path), "--out", str(out)]
    assert main([*argv, "--reference", "CartPole-v1=250"]) == 0
    printed = capsys.readouterr().out
    assert "| method | runs/task | IQM |" in printed
    result = json.loads((out / "compare.json").read_text())
    assert result["tasks"]["CartPole-v1"]["reference"] == 250
    assert result["tasks"]["CartPole-v1"]["reference_source"] == "given"


def test_bad_comparisons_fail_in_one_line_and_write_nothing(two_tasks, tmp_path, capsys):
    _, cart, catch = two_tasks
    other = fake_run(tmp_path / "other", "Catch-bsuite", [[1, 1, 1, 1]], lrs=(1e-2,))
    acrobot = fake_run(tmp_path / "acro", "Acrobot-v1", [[-100, -90, -80, -95], [-200] * 4])
    cases = [
        ([str(cart.path), str(other.path)], "share no method"),
        ([str(cart.path), str(acrobot.path)], "Acrobot-v1 has no reference score"),
        ([str(cart.path), str(tmp_path)], "holds no qlearn run"),
        ([str(cart.path), str(catch.path), "--reference", "CartPole-v1"], "write ENV=SCORE"),
        ([str(cart.path), str(catch.path), "--reference", "CartPole-v1=5"], "not above the random"),
    ]
    for args, message in cases:
        out = tmp_path / "never"
        assert main(["compare", *args, "--out", str(out)]) == 2, message
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (message, err)
        assert not out.exists()
    assert (
        main(
            [
                "compare",
                str(cart.path),
                str(acrobot.path),
                "--best-seen",
                "--out",
                str(tmp_path / "ok"),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "ok" / "compare.json").read_text())
    assert result["tasks"]["Acrobot-v1"]["reference"] == -80
