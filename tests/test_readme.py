"""The README quotes what the experiments measured: every results block of README.md is
rendered, character for character, from the results file its experiment (or ``make demo``)
wrote — so a re-run that moves a number cannot leave the README behind — and every results file
says which command, commit and backend it comes from."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))

import record  # noqa: E402

README = (ROOT / "README.md").read_text()


def test_every_results_file_is_quoted_and_every_block_has_a_file():
    assert set(record.blocks(README)) == set(record.names())


@pytest.mark.parametrize("name", record.names())
def test_a_results_block_says_what_its_file_says(name):
    """Rendered from its file by the ``readme`` of the script that wrote it, into typed parts
    (every benchmark and experiment but the demo, whose file record.py writes)."""
    report = record.load(name)
    parts = record.readme_of(report)(report)
    assert parts and all(isinstance(p, record.Text | record.Table) for p in parts)
    assert (record.script_of(report) is None) == (name == "demo")
    expected = record.to_markdown(parts)
    assert record.blocks(README)[name] == expected, (
        f"README's '{name}' block is stale: run `python experiments/record.py readme`"
    )


@pytest.mark.parametrize("name", record.names())
def test_a_results_file_names_its_command_commit_and_backend(name):
    result = record.load(name)
    provenance = result["provenance"]
    assert result["commit"] == provenance["git_commit"] and result["command"]
    assert provenance["command"] and provenance["backend"] and provenance["jax"]
    assert provenance["git_commit"] and not provenance["git_dirty"], provenance


def test_the_custom_loss_examples_run_and_their_losses_have_gradients():
    """The README's "A custom loss" code blocks, executed as written; then each loss on a
    small batch: its gradient is the one its docstring states, −mean(tanh(δ)·∇q̂)."""
    import jax
    import jax.numpy as jnp

    from qlearn import networks
    from qlearn.types import ReturnBatch, Transition

    section = README.split("## A custom loss", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```python\n")[1:]
    assert len(blocks) == 3
    scope: dict = {}
    for block in blocks:
        exec(block.split("```", 1)[0], scope)  # the README's own code, as written
    assert callable(scope["train"]) and scope["spec"].num_configs == 2
    penalty_spec = scope["penalty_spec"]  # the loss's own hyperparameter, swept like lr
    assert penalty_spec.num_configs == 3 and penalty_spec.hparams["penalty"] == [0.0, 0.01, 0.1]
    assert type(penalty_spec.batched_hparams()).__name__ == "DQNHParams_PenaltyHParams"
    net = networks.build("mlp", 2, (4,), hidden_sizes=(8,), activation="relu", layer_norm=False)
    obs = jax.random.normal(jax.random.key(0), (8, 4))
    params = net.init(jax.random.key(1), obs[:1])
    action = jnp.arange(8) % 2
    tr = Transition(obs, action, jnp.ones(8), obs, jnp.zeros(8, bool), jnp.zeros(8, bool),
                    jnp.ones(8, jnp.int32))  # fmt: skip
    hp = scope["dqn"].DQNHParams()
    q_next_max = jnp.max(net.apply(params, obs), axis=-1)
    cases = [  # (loss of the parameters, its targets y)
        (
            lambda p: scope["log_cosh_td_loss"](net.apply, p, params, tr, hp, None).loss,
            1.0 + hp.gamma * q_next_max,
        ),
        (
            lambda p: (
                scope["log_cosh_return_loss"](
                    net.apply, p, ReturnBatch(obs, action, jnp.full(8, 3.0)), hp, None
                ).loss
            ),
            jnp.full(8, 3.0),
        ),
    ]

    def q_sa(p):
        return jnp.take_along_axis(net.apply(p, obs), action[:, None], -1)[:, 0]

    penalised = scope["penalised_td_loss"]  # its penalty is w · mean q̂², read from hp
    hp_class = scope["dqn"].ALGORITHM.hparams_for(penalty_spec.base_config())
    at = {w: penalised(net.apply, params, params, tr, hp_class(penalty=w), None) for w in (0, 0.5)}
    np.testing.assert_array_equal(at[0.5].priority, at[0].priority)  # Huber's |δ|, kept
    at = {w: out.loss for w, out in at.items()}
    q_squared = jnp.mean(net.apply(params, obs) ** 2)
    np.testing.assert_allclose(at[0.5] - at[0], 0.5 * q_squared, rtol=1e-5)
    for loss, y in cases:
        weight = jnp.tanh(y - q_sa(params))
        expected = jax.grad(lambda p, w=weight: -jnp.mean(w * q_sa(p)))(params)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
            jax.grad(loss)(params),
            expected,
        )


def test_make_demo_writes_only_under_runs():
    """The first command a newcomer runs leaves ``git status`` clean: every path the demo's
    recipe writes (each ``--out``, and where the record goes) is under ``runs/``, which git
    ignores; only ``make demo-results`` updates the committed record."""
    import shlex
    import subprocess

    dry = subprocess.run(
        ["make", "-n", "--always-make", "demo", "VENV=/nonexistent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.replace("\\\n", " ")  # a recipe line continued with a backslash
    commands = [shlex.split(line) for line in dry.splitlines() if "/nonexistent/bin/" in line]
    demo = [c for c in commands if any(w.endswith(("qlearn", "record.py")) for w in c)]
    assert len(demo) == 2, dry
    for words in demo:
        outs = [words[i + 1] for i, w in enumerate(words) if w == "--out"]
        assert outs and all(out.startswith("runs/") for out in outs), words
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "runs/demo/demo.json"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0


def test_the_custom_diagnostic_example_plugs_into_the_metrics():
    """The README's custom diagnostic, executed as written, on the tiny config: the metric it
    names comes out of the compiled program, one value per evaluation."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    from conftest import TINY

    from qlearn.algos import dqn

    section = README.split("## Why did it win?", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    block = [b for b in blocks if "custom_diagnostics" in b]
    assert len(block) == 1
    scope: dict = {"jnp": jnp, "dqn": dqn}
    exec(block[0], scope)
    config = dataclasses.replace(scope["config"], **TINY, diagnostics_batch=32)
    _, metrics = jax.eval_shape(dqn.make_train(config), jax.random.key(0), dqn.DQNHParams())
    assert metrics["action_gap"].shape == (TINY["num_evals"],)


def test_the_memory_examples_build_the_programs_they_describe():
    """The README's "Memory" code blocks, executed as written with ``sweep.run`` recording its
    arguments instead of training: each config is valid and its program traces (PQN-RNN, and
    R2D2-style DQN with a recurrent core and the sequence source)."""
    import jax

    from qlearn import algos, sweep

    section = README.split("## Memory: recurrent Q-networks", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    assert len(blocks) == 2
    calls = []
    scope: dict = {}
    original = sweep.run
    sweep.run = lambda config, **kw: calls.append((config, kw))
    try:
        for block in blocks:
            exec(block, scope)
    finally:
        sweep.run = original
    assert [c.core for c, _ in calls] == ["gru", "gru"]
    for config, kw in calls:
        algo = algos.of(config)
        _, metrics = jax.eval_shape(algo.make_train(config), jax.random.key(0), kw["hparams"])
        assert metrics["eval_return"].shape == (config.num_evals,)


def test_the_offline_example_does_what_it_says(tmp_path, monkeypatch):
    """The README's "Offline Q-learning" blocks, executed as written (in a scratch directory,
    where the first writes its dataset): offline DQN's greedy policy leaves the expert's data
    in every visited state, CQL's never, and only CQL reaches the goal (the optimal −13); then
    offline-to-online from that dataset: CQL-pretrained and fine-tuned with plain TD it has
    lost the path at the first evaluation, with CQL throughout it is optimal at every one."""
    import numpy as np

    section = README.split("## Offline Q-learning", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(blocks[0], scope)
    metrics = scope["run"].metrics
    np.testing.assert_array_equal(metrics["greedy_ood"][:, :, -1], [[1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(metrics["greedy_return"][1, :, -1], [-13.0, -13.0])
    assert np.all(metrics["greedy_return"][0, :, -1] < -13.0)
    exec(blocks[1], scope)
    returns = scope["run"].metrics["eval_return"]  # [online α, seed, T]
    assert np.all(returns[0, :, 0] < -13.0)
    assert np.all(returns[1] == -13.0)
