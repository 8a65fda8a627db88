"""How fast does DQN solve CartPole-v1? 8 seeds, 100k env steps each, one compiled program.

Question: with tuned defaults, does DQN reach a greedy-evaluation return IQM ≥ 475 over 8 seeds
within 100k env steps, and how many wall-clock seconds does that take on this machine?
(Wall-clock is measured at every evaluation point, from the end of compilation: see timed.py.)

    python experiments/cartpole_dqn.py           # tuned settings, writes runs/cartpole_dqn
    python experiments/cartpole_dqn.py --seed 1000 --out runs/heldout --figure '' \
        --results experiments/results/cartpole_dqn_heldout.json     # held-out seeds
"""

from __future__ import annotations

import timed

THRESHOLD = 475.0

# Best found so far on CartPole-v1 (README, "Experiments"); also the library defaults.
TUNED_CONFIG = dict(
    env_id="CartPole-v1",
    total_steps=100_000,
    num_envs=10,
    learning_starts=5_000,
    buffer_size=50_000,
    batch_size=64,
    train_every=1,
    updates_per_train=1,
    hidden_sizes=(128,),
    layer_norm=True,
    num_evals=40,
)
TUNED_HPARAMS = dict(lr=1e-3, target_tau=0.02, target_period=1, eps_decay_fraction=0.2)


readme = timed.readme
"""The README block of this experiment's results file (:func:`timed.readme`)."""


def main() -> None:
    parser = timed.arguments(
        __doc__.splitlines()[0],
        out="runs/cartpole_dqn",
        figure="experiments/figures/cartpole_dqn.png",
    )
    args = parser.parse_args()
    timed.run(
        "dqn",
        TUNED_CONFIG,
        TUNED_HPARAMS,
        args,
        out=args.out,
        threshold=THRESHOLD,
        figure=args.figure,
    )


if __name__ == "__main__":
    main()
