"""PQN (Gallici et al., "Simplifying Deep Temporal Difference Learning", ICLR 2025): parallel
Q-learning without a replay buffer or a target network — many envs, LayerNorm in the
Q-network, Q(λ) targets over short rollouts: ``make_train(config) -> train(key, hparams)``,
vmappable over seeds and hyperparameters like DQN.

One iteration:
  1. roll out T = ``rollout_steps`` steps of N = ``num_envs`` envs with ε-greedy actions,
     then evaluate max_a Q(s_{t+1}, a) of every *next* state in one batched forward pass (for
     a truncated step, of ``info["final_observation"]``, the state the time limit
     interrupted);
  2. Q(λ) targets by a reverse scan (:func:`qlearn.algos.rollout_source.q_lambda_targets`):
         G_t = r_t + γ(1 − terminated_t) [(1 − λ_t) max_a Q(s_{t+1}, a) + λ_t G_{t+1}],
     λ_t = λ(1 − truncated_t), G_T's continuation = max_a Q(s_T, a): a termination cuts the
     bootstrap, a truncation cuts the recursion but bootstraps from the final observation;
  3. ``num_epochs`` epochs of ``num_minibatches`` minibatches of the semi-gradient loss
     mean ℓ(sg(G) − Q(s, a; θ)) over the N·T transitions (shuffled each epoch).
With ``core`` 'gru' or 'lstm' the network carries a memory (PQN-RNN, Gallici et al. 2024;
purejaxql's ``pqn_rnn``): it acts with it, reset at each episode's start, and each minibatch
is whole env sequences unrolled from the carry they started the rollout with
(:mod:`qlearn.recurrent`). Two of the three public implementations bootstrapped from the
wrong state (purejaxql #12, rejax #34); the targets here are tested against a numpy loop and
rlax at every index.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
from flax import struct

from qlearn import hparams, losses, recurrent
from qlearn.algos import deep_q, driver, learners, probes, rollout_source
from qlearn.types import ConfigError, ReturnLossFn, config_field, table_field


@dataclasses.dataclass(frozen=True)
class PQNConfig(deep_q.DeepQConfig):
    """Static configuration of a PQN run (hashable, validated on construction).

    Defaults: CleanRL's PQN CartPole shape (4 envs × 128 steps, 4 epochs of 4 minibatches),
    with Adam lr 1e-3, the best of 1e-4 / 2.5e-4 / 1e-3 over 4 seeds × 200k steps here."""

    num_envs: int = table_field(deep_q.SHARED_FIELDS, "num_envs", 4)
    rollout_steps: int = config_field(128, "steps T of each rollout (per env)")
    total_steps: int = table_field(deep_q.SHARED_FIELDS, "total_steps", 500_000)
    num_epochs: int = config_field(4, "passes over each rollout")
    num_minibatches: int = config_field(4, "minibatches per epoch (must divide N·T)")
    network: str = table_field(deep_q.SHARED_FIELDS, "network")
    hidden_sizes: tuple[int, ...] = table_field(deep_q.SHARED_FIELDS, "hidden_sizes", (128, 128))
    activation: str = table_field(deep_q.SHARED_FIELDS, "activation")
    layer_norm: bool = table_field(deep_q.SHARED_FIELDS, "layer_norm")
    core: str = table_field(recurrent.FIELDS, "core")
    memory_size: int = table_field(recurrent.FIELDS, "memory_size")
    loss: str | ReturnLossFn | tuple[str | ReturnLossFn, ...] = config_field(
        "mse", losses.registry.help_text("return", "λ-return losses (qlearn.types.ReturnLossFn): ")
    )
    num_evals: int = table_field(deep_q.SHARED_FIELDS, "num_evals")
    eval_episodes: int = table_field(deep_q.SHARED_FIELDS, "eval_episodes")
    divergence_bound: float = table_field(deep_q.SHARED_FIELDS, "divergence_bound")
    diagnostics: bool = table_field(probes.DIAGNOSTIC_FIELDS, "diagnostics")
    diagnostics_batch: int = table_field(probes.DIAGNOSTIC_FIELDS, "diagnostics_batch")
    custom_diagnostics: tuple[str | Callable, ...] = table_field(
        probes.DIAGNOSTIC_FIELDS, "custom_diagnostics"
    )

    def _validate(self) -> None:
        def fail(msg: str) -> None:
            raise ConfigError(msg)

        if self.network == "linear":
            fail(
                "config.network = 'linear' is for DQN on finite MDPs; PQN takes 'mlp', 'cnn' or "
                "'nature_cnn'"
            )
        deep_q.check_shared(self)
        deep_q.check_counts(self, ("rollout_steps", "total_steps", "num_epochs", "num_minibatches"))
        if self.batch_size % self.num_minibatches:
            fail(
                f"config.num_minibatches = {self.num_minibatches} must divide the rollout batch "
                f"num_envs × rollout_steps = {self.batch_size}"
            )
        if self.core != "none" and self.num_envs % self.num_minibatches:
            fail(
                f"config.num_minibatches = {self.num_minibatches} must divide num_envs = "
                f"{self.num_envs}: a recurrent network trains on whole sequences of the envs"
            )
        if self.core != "none" and self.diagnostics:
            fail(
                "config.diagnostics are not measured for a recurrent network yet (its probe "
                "states would need their carries): set diagnostics=false or core='none'"
            )
        if self.iterations_per_eval < 1:
            fail(
                f"config.total_steps = {self.total_steps} is less than num_evals = "
                f"{self.num_evals} rollouts of {self.batch_size} steps"
            )
        try:
            losses.resolve_return_loss(self.loss)
        except ValueError as e:
            fail(str(e))
        updates = self.iterations_per_eval * self.num_epochs * self.num_minibatches
        probes.check_diagnostics(self, updates, self.batch_size // self.num_minibatches)

    @property
    def batch_size(self) -> int:
        """Transitions per rollout, N·T."""
        return self.num_envs * self.rollout_steps

    @property
    def iterations_per_eval(self) -> int:
        return self.total_steps // (self.num_evals * self.batch_size)

    @property
    def total_updates(self) -> int:
        """Gradient updates in a run: one per minibatch, epoch and rollout."""
        return self.iterations_per_eval * self.num_evals * self.num_epochs * self.num_minibatches

    @property
    def actual_total_steps(self) -> int:
        """Env steps actually run: whole rollouts in whole evaluation intervals."""
        return self.iterations_per_eval * self.num_evals * self.batch_size


@struct.dataclass
class PQNHParams:
    lr: float = hparams.table_field(deep_q.SHARED_HPARAMS, "lr")
    gamma: float = hparams.table_field(deep_q.SHARED_HPARAMS, "gamma")
    lam: float = hparams.field(0.65, low=0, high=1, help="λ of the Q(λ) targets")
    eps_start: float = hparams.table_field(deep_q.SHARED_HPARAMS, "eps_start")
    eps_end: float = hparams.table_field(deep_q.SHARED_HPARAMS, "eps_end")
    eps_decay_fraction: float = hparams.table_field(deep_q.SHARED_HPARAMS, "eps_decay_fraction")
    max_grad_norm: float = hparams.table_field(deep_q.SHARED_HPARAMS, "max_grad_norm")
    lr_decay: float = hparams.field(
        0.0,
        low=0,
        high=1,
        help="lr falls linearly to lr·(1 − lr_decay) over the run (purejaxql's MinAtar: 1)",
    )
    huber_delta: float = hparams.table_field(deep_q.SHARED_HPARAMS, "huber_delta")
    loss_index: int = hparams.table_field(deep_q.SHARED_HPARAMS, "loss_index")
    dormant_tau: float = hparams.table_field(probes.DIAGNOSTIC_HPARAMS, "dormant_tau")
    srank_delta: float = hparams.table_field(probes.DIAGNOSTIC_HPARAMS, "srank_delta")


def agent(config: PQNConfig, progress: deep_q.ProgressFn | None = None) -> driver.Agent:
    """PQN as the driver runs it: a rollout source with Q(λ) targets
    (:func:`~qlearn.algos.rollout_source.rollout_source`) and a learner without a target network
    (:func:`~qlearn.algos.learners.return_learner`, its step size decayed over the run's
    :attr:`~PQNConfig.total_updates`)."""
    prog = deep_q.program(config, losses.resolve_return_loss(config.loss), progress)

    def build(hp: PQNHParams) -> driver.Parts:
        learner = learners.return_learner(prog, hp, config.total_updates)
        source = rollout_source.rollout_source(prog, hp)
        return driver.Parts(source, learner, probes.diagnosed(prog, hp, source, learner))

    return driver.Agent(prog, build, config.iterations_per_eval)


def make_train(
    config: PQNConfig, *, progress: deep_q.ProgressFn | None = None
) -> Callable[[jax.Array, PQNHParams], tuple[driver.RunState, dict[str, jax.Array]]]:
    """Build ``train(key, hparams) -> (final_state, metrics)``
    (:func:`qlearn.algos.driver.make_train` of :func:`agent`); metrics have shape
    [num_evals]: env_steps, eval_return (greedy, ε = 0, on separate envs), train_return,
    train_episodes, epsilon, loss, q_mean, target_mean, td_abs (means over the interval's
    updates), q_abs_max, diverged — the names DQN uses, so runs, sweeps and plots treat both
    alike."""
    return driver.make_train(agent(config, progress))


def make_stages(
    config: PQNConfig, *, progress: deep_q.ProgressFn | None = None
) -> tuple[Callable, Callable]:
    """``(init, run_intervals)`` of ``config``, the resumable form of ``train``
    (:func:`qlearn.algos.driver.make_stages`): PQN runs checkpoint like DQN's."""
    return driver.make_stages(agent(config, progress))


ALGORITHM = deep_q.algorithm(
    "return",
    name="pqn",
    config=PQNConfig,
    hparams=PQNHParams,
    make_train=make_train,
    validate_hparams=PQNConfig.validate_hparams,
    make_stages=make_stages,
)
