"""Do the README's results files still hold at this code? Shortened versions of every
experiment family (DQN and PQN on CartPole and Breakout with the experiments' settings, the
same with a progress callback compiled in as the timed experiments and which-loss run them,
which-loss's heads and losses on Breakout, the replay weightings on a Garnet, the suites'
Navix task, tabular control, linear prediction on Baird and a Garnet), run by the code on
``sys.path``; two checkouts' outputs are compared bitwise. Equal arrays mean the training
programs are the same, so the full-length numbers cannot have moved. A family the older
checkout does not have yet is skipped there (``--compare`` compares the older file's arrays).

    PYTHONPATH=OLD python OLD/experiments/same_numbers.py OLD old.npz   # e.g. a git worktree
    PYTHONPATH=. python experiments/same_numbers.py . new.npz
    python experiments/same_numbers.py --compare old.npz new.npz
"""

import dataclasses
import sys
from pathlib import Path

import jax
import numpy as np

if sys.argv[1] == "--compare":
    a, b = np.load(sys.argv[2]), np.load(sys.argv[3])
    differ = [k for k in a.files if k not in b.files or not np.array_equal(a[k], b[k], True)]
    print(f"compared {len(a.files)} arrays; differ: {differ or 'none'}")
    sys.exit(1 if differ else 0)
root, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, root + "/experiments")
import cartpole_dqn  # noqa: E402
import cartpole_pqn  # noqa: E402
import deadly_triad  # noqa: E402
import minatar_dqn  # noqa: E402
import minatar_pqn  # noqa: E402

from qlearn import sweep  # noqa: E402
from qlearn.algos import dqn, pqn, prediction, tabular  # noqa: E402
from qlearn.envs import catalog  # noqa: E402

res = {}


def put(name, metrics):
    for k, v in metrics.items():
        res[f"{name}/{k}"] = np.asarray(v)


short_dqn = dict(total_steps=20_000, num_evals=4)
cfg = dqn.DQNConfig(**{**cartpole_dqn.TUNED_CONFIG, **short_dqn})
put("dqn_tuned", sweep.run(cfg, {"lr": [1e-3, 3e-4]}, seeds=2, lanes=2).metrics)
put("dqn_default", sweep.run(dqn.DQNConfig(**short_dqn), {"lr": [1e-3]}, seeds=2, lanes=2).metrics)
cfg = pqn.PQNConfig(**{**cartpole_pqn.CONFIG, "total_steps": 20_480, "num_evals": 4})
put("pqn_cartpole", sweep.run(cfg, {"lr": [1e-3]}, seeds=2, lanes=2).metrics)
cfg = dqn.DQNConfig(
    **{
        **minatar_dqn.CONFIG,
        "env_id": "Breakout-MinAtar",
        "total_steps": 8_000,
        "learning_starts": 2_000,
        "buffer_size": 5_000,
        "num_evals": 2,
        "eval_episodes": 2,
    }
)
put(
    "dqn_breakout",
    sweep.run(cfg, hparams=dqn.DQNHParams(**minatar_dqn.HPARAMS), seeds=2, lanes=2).metrics,
)
cfg = pqn.PQNConfig(
    **{
        **minatar_pqn.CONFIG,
        "env_id": "Breakout-MinAtar",
        "total_steps": 32_768,
        "num_evals": 2,
        "eval_episodes": 2,
    }
)
put(
    "pqn_breakout",
    sweep.run(cfg, hparams=pqn.PQNHParams(**minatar_pqn.HPARAMS), seeds=2, lanes=2).metrics,
)
# with a host callback compiled in, as the timed experiments (EvalClock) and which_loss (the
# progress bar) run: its operands differ across versions, the arithmetic must not
put(
    "dqn_default_progress",
    sweep.run(
        dqn.DQNConfig(**short_dqn), {"lr": [1e-3]}, seeds=2, lanes=2, progress=lambda *a: None
    ).metrics,
)
breakout = {**minatar_dqn.CONFIG, "env_id": "Breakout-MinAtar", "total_steps": 8_000}
breakout |= {"learning_starts": 2_000, "buffer_size": 5_000, "num_evals": 2, "eval_episodes": 2}
for head, names in [("scalar", ("huber", "munchausen")), ("categorical", ("c51",))]:
    cfg = dqn.DQNConfig(**breakout, head=head, loss=names)
    hp = dqn.DQNHParams(v_min=0.0, v_max=20.0, lr=3e-4, target_tau=0.01)
    grid = {"loss_index": list(range(len(names)))}
    run = sweep.run(cfg, grid, hparams=hp, seeds=2, lanes=2, progress=lambda *a: None)
    put(f"which_loss_{head}", run.metrics)
fields = {f.name for f in dataclasses.fields(dqn.DQNConfig)}
if "replay" in fields and "coverage" in {f.name for f in dataclasses.fields(dqn.DQNHParams)}:
    garnet = dict(env_id="Garnet", env_kwargs={"n_states": 30, "n_actions": 4, "branching": 3})
    garnet |= dict(max_episode_steps=100, num_envs=4, total_steps=4_000, learning_starts=500)
    garnet |= dict(buffer_size=2_000, batch_size=32, num_evals=4, hidden_sizes=(32,))
    for replay, grid in [("prioritized", {"per_alpha": [0.6]}), ("coverage", {"coverage": [0.3]})]:
        cfg = dqn.DQNConfig(**garnet, replay=replay)
        hp = dqn.DQNHParams(lr=3e-3, gamma=0.9)
        put(f"weighting_{replay}", sweep.run(cfg, grid, hparams=hp, seeds=2, lanes=2).metrics)
if (Path(root) / "qlearn" / "envs" / "suites.py").exists():
    navix = dict(env_id="navix:Navix-Empty-8x8-v0", total_steps=8_000, learning_starts=1_000)
    navix |= dict(num_envs=8, hidden_sizes=(64,), num_evals=2, eval_episodes=2)
    put("suites_navix", sweep.run(dqn.DQNConfig(**navix), seeds=2, lanes=2).metrics)
for env, alg, hp in [
    ("CliffWalking", "sarsa", tabular.TabularHParams(lr=0.5, epsilon=0.1, gamma=1.0)),
    ("CliffWalking", "q_learning", tabular.TabularHParams(lr=0.5, epsilon=0.1, gamma=1.0)),
    (
        "MaximizationBias",
        "double_q_learning",
        tabular.TabularHParams(lr=0.1, epsilon=0.1, gamma=1.0),
    ),
]:
    cfg = tabular.TabularConfig(env_id=env, algorithm=alg, num_episodes=100)
    put(f"tab_{env}_{alg}", sweep.run(cfg, hparams=hp, seeds=4, lanes=4).metrics)
keys = sweep.seed_keys(0, 2)
for loss, mode in [("semi_gradient", "sample"), ("tdc", "sample"), ("gtd2", "expected")]:
    cfg = prediction.PredictionConfig(
        env_id="Baird",
        loss=loss,
        mode=mode,
        target_policy=tuple(catalog.BAIRD_TARGET),
        behaviour_policy=tuple(catalog.BAIRD_BEHAVIOUR),
        initial_weights=tuple(catalog.BAIRD_INITIAL_WEIGHTS),
        num_steps=300,
    )
    _, m = jax.jit(jax.vmap(prediction.make_train(cfg), (0, None)))(
        keys, prediction.PredictionHParams(lr=0.01, beta=0.01, gamma=0.99)
    )
    put(f"baird_{loss}", m)
cfg = prediction.PredictionConfig(
    env_id="Garnet",
    env_kwargs=deadly_triad.GARNET,
    loss="semi_gradient",
    mode="expected",
    target_policy=deadly_triad.TARGET,
    behaviour_policy=deadly_triad.BEHAVIOUR,
    num_steps=300,
)
_, m = jax.jit(prediction.make_train(cfg))(
    jax.random.key(0), prediction.PredictionHParams(lr=0.01, gamma=0.9)
)
put("garnet_pred", m)
# every DQN and PQN feature in a tiny run (replay kinds, heads, losses, noise, n-step, masks,
# finite-MDP truth), so a reorganisation of the deep-Q layer is checked beyond the experiments
tiny = dict(num_envs=2, total_steps=1_200, learning_starts=200, buffer_size=1_000)
tiny |= dict(batch_size=16, hidden_sizes=(16,), num_evals=2, eval_episodes=2)
features = {
    "per_buffer": dict(replay="prioritized", per_normalise="buffer", updates_per_train=2),
    "per_nstep": dict(replay="prioritized", n_step=3, train_every=2),
    "noisy_mse": dict(noisy=True, loss="mse", target_network=False),
    "iqn": dict(
        head="iqn", loss="iqn", num_quantiles=4, iqn_target_quantiles=3, iqn_action_quantiles=2
    ),
    "iqn_noisy": dict(head="iqn", loss="iqn", num_quantiles=4, noisy=True, replay="prioritized"),
    "qr_dueling": dict(head="quantile", loss="qr", num_quantiles=5, dueling=True),
    "histogram": dict(head="histogram", loss=("hl_gauss", "two_hot"), num_atoms=11),
    "c51": dict(head="categorical", loss="c51", num_atoms=11, double_q=False),
    "scalar_losses": dict(loss=("residual", "dqn_reg", "munchausen")),
}
for name, extra in features.items():
    cfg = dqn.DQNConfig(**tiny, **extra)
    grid = {"loss_index": list(range(len(cfg.loss)))} if isinstance(cfg.loss, tuple) else None
    put(f"feature_{name}", sweep.run(cfg, grid, seeds=2, lanes=2).metrics)
garnet_tiny = dict(env_id="Garnet", env_kwargs={"n_states": 12, "n_actions": 3, "branching": 2})
garnet_tiny |= dict(max_episode_steps=50, **tiny)
for name, extra in {
    "garnet_c51": dict(head="categorical", loss="c51", num_atoms=11),
    "garnet_qr_nstep": dict(head="quantile", loss="qr", num_quantiles=5, n_step=2),
    "garnet_coverage": dict(replay="coverage", updates_per_train=2),
    "garnet_per": dict(replay="prioritized"),
}.items():
    cfg = dqn.DQNConfig(**garnet_tiny, **extra)
    put(f"feature_{name}", sweep.run(cfg, hparams=dqn.DQNHParams(gamma=0.9), seeds=2).metrics)
masked = dict(env_id="MaximizationBias", max_episode_steps=20, **tiny)
put("feature_masked_dqn", sweep.run(dqn.DQNConfig(**masked, n_step=2), seeds=2).metrics)
pqn_tiny = dict(num_envs=4, rollout_steps=16, total_steps=2_048, num_epochs=2, num_minibatches=2)
pqn_tiny |= dict(hidden_sizes=(16,), num_evals=2, eval_episodes=2)
cfg = pqn.PQNConfig(**pqn_tiny, loss=("mse", "huber"))
hp = pqn.PQNHParams(lr_decay=0.5)
put("feature_pqn_losses", sweep.run(cfg, {"loss_index": [0, 1]}, hparams=hp, seeds=2).metrics)
cfg = pqn.PQNConfig(**pqn_tiny, env_id="MaximizationBias", max_episode_steps=20)
put("feature_pqn_masked", sweep.run(cfg, seeds=2).metrics)
np.savez(out, **res)
print(len(res), "arrays")
