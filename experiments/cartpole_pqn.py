"""PQN on CartPole-v1: 8 seeds × 500k env steps, one compiled program.

Question: does PQN reach a greedy-evaluation return IQM ≥ 475 over 8 seeds within 500k env
steps (CleanRL's PQN reports 495 ± 7 at 500k; Rejax's a mean of ≈ 408 at 524k), and when, in
env steps and in wall-clock seconds after compilation?

    python experiments/cartpole_pqn.py            # writes runs/cartpole_pqn
"""

from __future__ import annotations

import timed

THRESHOLD = 475.0

# The library defaults (CleanRL's CartPole shape, lr 1e-3: README, "Experiments").
CONFIG = dict(env_id="CartPole-v1", total_steps=500_000, num_evals=40)
HPARAMS: dict = {}


readme = timed.readme
"""The README block of this experiment's results file (:func:`timed.readme`)."""


def main() -> None:
    parser = timed.arguments(
        __doc__.splitlines()[0],
        out="runs/cartpole_pqn",
        figure="experiments/figures/cartpole_pqn.png",
    )
    args = parser.parse_args()
    timed.run("pqn", CONFIG, HPARAMS, args, out=args.out, threshold=THRESHOLD, figure=args.figure)


if __name__ == "__main__":
    main()
