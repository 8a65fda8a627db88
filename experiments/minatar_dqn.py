"""DQN on MinAtar (Breakout and SpaceInvaders): 4 seeds × 500k env steps per game on a CPU.

Question: how far does DQN get on MinAtar in about the wall-clock time PQN is given
(experiments/minatar_pqn.py), in env steps and seconds? Settings after Young & Tian (2019):
their network (plus LayerNorm), a 100k replay buffer, 5k steps before learning, ε → 0.05 over
the first 100k steps; with 10 envs and one Adam update of 64 transitions per vectorised step,
and a Polyak-averaged target network.

    python experiments/minatar_dqn.py                        # ≈ 19 min on 2 CPU cores
    python experiments/minatar_dqn.py --seeds 8 --total-steps 5000000 \\
        --games Breakout-MinAtar,Asterix-MinAtar,Freeway-MinAtar,SpaceInvaders-MinAtar  # full
"""

from __future__ import annotations

import timed

CONFIG = dict(
    network="cnn",
    hidden_sizes=(128,),
    layer_norm=True,
    num_envs=10,
    total_steps=500_000,
    learning_starts=5_000,
    buffer_size=100_000,
    batch_size=64,
    train_every=1,
    updates_per_train=1,
    num_evals=20,
    eval_episodes=10,
)
HPARAMS = dict(lr=3e-4, target_tau=0.01, eps_end=0.05, eps_decay_fraction=0.2)


readme = timed.games_readme
"""The README block of this experiment's results file (:func:`timed.games_readme`)."""


def main() -> None:
    parser = timed.arguments(
        __doc__.splitlines()[0],
        out="runs/minatar_dqn",
        figure="experiments/figures/minatar_dqn.png",
        games="Breakout-MinAtar,SpaceInvaders-MinAtar",
    )
    parser.set_defaults(seeds=4)
    timed.run_games("dqn", CONFIG, HPARAMS, parser.parse_args())


if __name__ == "__main__":
    main()
