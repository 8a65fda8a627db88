"""PQN on MinAtar (Breakout and SpaceInvaders): 4 seeds × 2M env steps per game on a CPU.

Question: how far does PQN get on MinAtar within a CPU budget of ≈ 10 minutes per game, in env
steps and wall-clock seconds, beside the published final returns at 5M frames (MinAtar paper,
gymnax's PPO)? Settings: purejaxql's MinAtar configuration (128 envs × 32 steps, 2 epochs of 32
minibatches, lr 5e-4 decaying linearly to 0, ε → 0.05 over the first 10%, λ = 0.65) with the
Young & Tian network plus LayerNorm.

    python experiments/minatar_pqn.py                        # ≈ 20 min on 2 CPU cores
    python experiments/minatar_pqn.py --seeds 8 --total-steps 5000000 \\
        --games Breakout-MinAtar,Asterix-MinAtar,Freeway-MinAtar,SpaceInvaders-MinAtar  # full
"""

from __future__ import annotations

import timed

CONFIG = dict(
    network="cnn",
    hidden_sizes=(128,),
    layer_norm=True,
    num_envs=128,
    rollout_steps=32,
    num_epochs=2,
    num_minibatches=32,
    loss="mse",
    total_steps=2_000_000,
    num_evals=20,
    eval_episodes=10,
)
HPARAMS = dict(lr=5e-4, lr_decay=1.0, eps_end=0.05, eps_decay_fraction=0.1, lam=0.65)


readme = timed.games_readme
"""The README block of this experiment's results file (:func:`timed.games_readme`)."""


def main() -> None:
    parser = timed.arguments(
        __doc__.splitlines()[0],
        out="runs/minatar_pqn",
        figure="experiments/figures/minatar_pqn.png",
        games="Breakout-MinAtar,SpaceInvaders-MinAtar",
    )
    parser.set_defaults(seeds=4)
    timed.run_games("pqn", CONFIG, HPARAMS, parser.parse_args())


if __name__ == "__main__":
    main()
