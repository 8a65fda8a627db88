"""What the deep Q-learning algorithms (DQN, PQN) share, written once so the copies cannot
drift: the checks of their common config fields, env and network construction, the ε schedule,
one ε-greedy env step over N envs (masked, exact: :func:`qlearn.policies.epsilon_greedy`), the
metrics of an evaluation interval and what reports read from them.

Neither algorithm imports the other; both import this module.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qlearn import dp, envs, heads, hparams, losses, networks, noisynet, policies, recurrent
from qlearn.algos import rollout
from qlearn.algos.algorithm import Algorithm
from qlearn.types import ConfigError, Transition

ProgressFn = Callable[..., None]
"""``progress(env_steps_done_in_interval, eval_return)``, called from inside the compiled loop
(via ``jax.debug.callback``) once per evaluation interval and run; a callable whose
``wants_points`` is true gets ``progress(done, eval_return, point)``, ``point`` being the
evaluation point itself (:func:`report`): the run's key bits and hyperparameters, which say
whose point it is, the interval's index and its metrics, the values that fill
``metrics[name][t]``. What :mod:`qlearn.trackers` writes live; a progress bar alone does not
pay for moving them to the host."""

make_env = envs.make_for


# -- the shared config and hyperparameters ---------------------------------------------------

NETWORKS_HELP = (
    "'mlp', 'cnn' (MinAtar: one 3×3 conv) or 'nature_cnn' (the Nature DQN's strided convs, "
    "for images of at least 36×36)"
)
SHARED_FIELDS: dict[str, tuple[Any, str]] = {
    "num_envs": (10, "parallel training environments N"),
    "total_steps": (100_000, "env steps per run (summed over the parallel envs)"),
    "network": ("mlp", NETWORKS_HELP),
    "hidden_sizes": (
        (128,),
        "MLP hidden widths (cnn: its dense width is the first; nature_cnn: its dense layers)",
    ),
    "activation": ("relu", f"MLP activation: {', '.join(networks.ACTIVATIONS)}"),
    "layer_norm": (True, "LayerNorm after each hidden layer (PQN's stabiliser)"),
    "num_evals": (20, "evaluation points (metrics have this many time steps)"),
    "eval_episodes": (10, "greedy episodes per evaluation"),
    "divergence_bound": (1e6, "a run with |Q| above this (or NaN/inf) is diverged"),
}
"""The static fields every deep-Q config has: name -> (default, help), declared by each config
with :func:`qlearn.types.table_field`."""


SHARED_HPARAMS: dict[str, dict[str, Any]] = {
    "lr": dict(default=1e-3, low=0, low_open=True, help="Adam step size"),
    "gamma": dict(default=0.99, low=0, high=1, help="discount γ"),
    "eps_start": dict(default=1.0, low=0, high=1, help="initial ε"),
    "eps_end": dict(default=0.05, low=0, high=1, help="final ε"),
    "eps_decay_fraction": dict(
        default=0.2, low=0, high=1, help="fraction of total_steps over which ε decays linearly"
    ),
    "max_grad_norm": dict(
        default=10.0, low=0, low_open=True, help="global-norm gradient clipping (inf: none)"
    ),
    "huber_delta": dict(default=1.0, low=0, low_open=True, help="Huber threshold κ"),
    "loss_index": dict(
        default=0, low=0, integer=True, help="which loss of a tuple config.loss to train with"
    ),
}
"""The hyperparameters every deep-Q algorithm has: name -> :func:`qlearn.hparams.field`
keywords, declared by each hyperparameters class with :func:`qlearn.hparams.table_field`."""


@dataclasses.dataclass(frozen=True)
class DeepQConfig(envs.EnvConfig):
    """What every deep-Q config does on construction: normalise the fields given as lists
    (``hidden_sizes``, a tuple ``loss``, ``env_kwargs``, ``custom_diagnostics``) and validate
    (``_validate``, raising :class:`~qlearn.types.ConfigError` naming the field); and what its
    hyperparameters are checked against before anything compiles (:meth:`validate_hparams`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(w) for w in self.hidden_sizes))
        if isinstance(self.loss, list):
            object.__setattr__(self, "loss", tuple(self.loss))
        if isinstance(self.custom_diagnostics, list):
            object.__setattr__(self, "custom_diagnostics", tuple(self.custom_diagnostics))
        object.__setattr__(self, "env_kwargs", envs.kwargs_tuple(self.env_kwargs))
        self._validate()

    def _validate(self) -> None:
        raise NotImplementedError

    def validate_hparams(self, hp: Any) -> None:
        """Checks of hyperparameters against this config (before anything compiles): the
        ``loss_index`` of a tuple of losses."""
        check_loss_index(self, hp)


def check_replay_hparams(config: Any, hp: Any) -> None:
    """What a replay learner's config checks of its hyperparameters before anything compiles
    (DQN's and the offline learner's): γ that gives a finite MDP finite values, ``loss_index``
    within the losses, the head's own (:meth:`qlearn.heads.Head.check_hparams`)."""
    if envs.is_finite(config.env_id):  # q* of the true-error metrics needs finite values
        dp.check_discounts(make_env(config)[1], hp.gamma)
    check_loss_index(config, hp)
    config.value_head.check_hparams(hp)


def replay_loss_options(config: Any) -> dict[str, Any]:
    """The keywords of :func:`qlearn.losses.resolve` a replay config's fields give."""
    return {
        "double_q": config.double_q,
        "munchausen_next_policy": config.munchausen_next_policy,
        "iqn_target_quantiles": config.iqn_target_quantiles,
        "iqn_action_quantiles": config.iqn_action_quantiles,
        "value_rescaling": config.value_rescaling,
        "iqn_shared_levels": config.iqn_shared_levels,
    }


# -- config checks ------------------------------------------------------------------------


def check_counts(config: Any, names: tuple[str, ...], minimum: int = 1) -> None:
    """Raise ConfigError unless each field ``names`` of ``config`` is an integer ≥ ``minimum``
    (``True`` is not an integer here)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"config.{name} = {value!r} must be an integer ≥ {minimum}")


def check_shared(config: Any, head: heads.Head = heads.SCALAR, noisy: bool = False) -> None:
    """The checks of the fields every deep-Q config has: the env (its id, builder arguments,
    time limit and discrete action space), the counts of envs and evaluations, the network for
    its observations (activation, widths) and the divergence bound."""
    try:
        envs.check_id(config.env_id)
    except envs.UnknownEnvError as e:
        raise ConfigError(f"config.env_id: {e}") from None
    try:
        make_env(config)
    except ValueError as e:
        raise ConfigError(f"config.env_kwargs: {e}") from None
    check_counts(config, ("num_envs", "num_evals", "eval_episodes"))
    if config.max_episode_steps is not None and config.max_episode_steps < 1:
        raise ConfigError(
            f"config.max_episode_steps = {config.max_episode_steps} must be ≥ 1 or None"
        )
    check_network(config, head, noisy)
    if config.activation not in networks.ACTIVATIONS:
        raise ConfigError(
            f"config.activation = '{config.activation}' must be one of "
            f"{', '.join(networks.ACTIVATIONS)}"
        )
    if any(w < 1 for w in config.hidden_sizes):
        raise ConfigError(f"config.hidden_sizes = {config.hidden_sizes} must be positive widths")
    if not config.divergence_bound > 0:
        raise ConfigError(f"config.divergence_bound = {config.divergence_bound} must be > 0")


def check_network(config: Any, head: heads.Head = heads.SCALAR, noisy: bool = False) -> None:
    """Raise ConfigError unless the env has discrete actions and ``config.network`` (with
    ``head``, noisy or not) suits its observations."""
    env, env_params = make_env(config)
    space = env.action_space(env_params)
    if not hasattr(space, "n"):
        shape = getattr(space, "shape", None)
        raise ConfigError(
            f"config.env_id = '{config.env_id}' has a continuous action space "
            f"({type(space).__name__}{f', shape {tuple(shape)}' if shape is not None else ''}); "
            "Q-learning here needs a discrete one (gymnax's Discrete)"
        )
    try:
        make_network(config, env.num_actions, env.observation_space(env_params).shape, head, noisy)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def masks_actions(config: Any) -> bool:
    """Whether some state of the config's env has an unavailable action (a finite MDP whose
    mask is all True masks nothing)."""
    env, env_params = make_env(config)
    if not hasattr(env, "action_mask"):
        return False
    return not np.all(getattr(env_params, "action_mask", False))


def num_losses(loss: Any) -> int:
    """How many losses ``config.loss`` offers to ``hparams.loss_index``."""
    return len(loss) if isinstance(loss, tuple) else 1


def check_loss_index(config: Any, hp: Any) -> None:
    """Raise HParamError unless every ``hp.loss_index`` picks one of ``config.loss``'s
    losses (``lax.switch`` would silently clamp it)."""
    count = num_losses(config.loss)
    index = np.atleast_1d(np.asarray(hp.loss_index))
    if np.any(index >= count):
        raise hparams.HParamError(
            f"hyperparameter 'loss_index' = {int(index.max())} but config.loss offers "
            f"{count} loss(es) (indices 0..{count - 1})"
        )


# -- construction -------------------------------------------------------------------------


def make_network(
    config: Any,
    num_actions: int,
    obs_shape: tuple[int, ...] = (),
    head: heads.Head = heads.SCALAR,
    noisy: bool = False,
) -> Any:
    """The Q-network of a deep-Q config (see :func:`qlearn.networks.build`): A·K outputs for
    a head of K outputs per action, noisy fully connected layers with ``noisy``; recurrent
    with a memory ``config.core`` (:func:`qlearn.recurrent.build`)."""
    kwargs = dict(
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
        layer_norm=config.layer_norm,
        head=head,
        noisy=noisy,
    )
    core = getattr(config, "core", "none")  # a tabular config has no core
    if core != "none":
        return recurrent.build(
            config.network,
            num_actions,
            obs_shape,
            core=core,
            memory_size=config.memory_size,
            **kwargs,
        )
    return networks.build(config.network, num_actions, obs_shape, **kwargs)


@dataclasses.dataclass(frozen=True)
class Program:
    """The static pieces a deep-Q training program closes over, built once from its config
    by :func:`program`: the algorithms' scan bodies are top-level functions of (program,
    hyperparameters, state, ...), bound with ``functools.partial``."""

    config: Any
    env: Any
    env_params: Any
    network: Any
    loss: Callable
    """the resolved loss (DQN: a :data:`~qlearn.types.LossFn`; PQN: a
    :data:`~qlearn.types.ReturnLossFn`)."""
    progress: ProgressFn | None
    head: heads.Head = heads.SCALAR
    noise: Any = None
    """the shapes of a noisy network's noise collection (:class:`~qlearn.noisynet.NoisyDense`;
    None for a network without noisy layers)."""
    action_quantiles: int | None = None
    """K: an ``iqn`` head acts on the mean at K levels τ ~ U(0, 1) drawn per env and step
    (Dabney et al. 2018b); None: on q̂, its mean at the midpoints τ̂."""
    explores: bool = True
    """whether the run acts ε-greedily in training envs (an offline learner does not: no
    ``epsilon`` metric, no ε hyperparameters)."""

    def q_function(self, hp: Any) -> networks.QFunction:
        """q̂ of this program's network and head under hyperparameters ``hp`` (a categorical
        head's atoms and a histogram head's bins span [hp.v_min, hp.v_max])."""
        return networks.QFunction(self.network.apply, self.head, self.head.support(hp))

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.env.observation_space(self.env_params).shape

    @property
    def recurrent(self) -> bool:
        """Whether the network carries a memory (:mod:`qlearn.recurrent`)."""
        return isinstance(self.network, recurrent.RecurrentQNetwork)

    def init_params(self, key: jax.Array) -> Any:
        """The network's initial variables from ``key``."""
        return recurrent.init_params(self.network, key, self.obs_shape)

    @property
    def num_envs(self) -> int:
        return self.config.num_envs


def program(
    config: Any,
    loss: Callable,
    progress: ProgressFn | None,
    head: heads.Head = heads.SCALAR,
    noisy: bool = False,
    action_quantiles: int | None = None,
) -> Program:
    """The :class:`Program` of a deep-Q config: its env, Q-network (with ``head``, noisy
    layers with ``noisy``), resolved ``loss``, optional ``progress`` callback and an ``iqn``
    head's sampled levels to act by (``action_quantiles``, :attr:`Program.action_quantiles`)."""
    env, env_params = make_env(config)
    obs_shape = env.observation_space(env_params).shape
    network = make_network(config, env.action_space(env_params).n, obs_shape, head, noisy)
    noise = None
    if noisy:
        init = functools.partial(recurrent.init_params, network, obs_shape=obs_shape)
        shapes = jax.eval_shape(init, jax.random.key(0))
        noise = noisynet.split_variables(shapes)[1]
    return Program(config, env, env_params, network, loss, progress, head, noise, action_quantiles)


def epsilon_schedule(config: Any, hp: Any) -> Callable[[jax.Array], jax.Array]:
    """ε(env_steps): linear from ``hp.eps_start`` to ``hp.eps_end`` over the first
    ``hp.eps_decay_fraction`` of ``config.total_steps``, then constant."""

    def epsilon(env_steps: jax.Array) -> jax.Array:
        decay = hp.eps_decay_fraction * config.total_steps
        return policies.linear_schedule(env_steps, hp.eps_start, hp.eps_end, decay)

    return epsilon


def explore_step(
    prog: Program,
    hp: Any,
    params: Any,
    key: jax.Array,
    env_state: Any,
    obs: jax.Array,
    epsilon: jax.Array,
    memory: recurrent.Memory | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, Any, Transition, recurrent.Memory | None]:
    """One ε-greedy step of N envs (auto-reset) in ``env_state`` from observations ``obs``
    [N, ...] with the Q-network's ``params``: ``(key', action [N], obs', env_state',
    transition, memory')``. The actions are masked to the available ones where the env has
    masks. A noisy network acts with fresh noise for each env at each step, an ``iqn`` head
    with ``prog.action_quantiles`` = K on its mean at K fresh levels τ per env and step (keys
    split off only then, so no other random stream moves). A recurrent network acts with its
    ``memory`` (:data:`qlearn.recurrent.Memory`) and returns the one after the step (its carry
    reset where ``obs'`` starts an episode); None for a feed-forward one."""
    env, env_params, q_fn = prog.env, prog.env_params, prog.q_function(hp)
    num_envs = obs.shape[0]
    key, k_act, k_step = jax.random.split(key, 3)
    words = jax.random.bits(k_act, (num_envs, policies.WORDS_PER_DECISION), jnp.uint32)
    step_keys = jax.random.split(k_step, num_envs)
    mask = envs.action_masks(env, env_params, env_state)
    noise = tau = None
    if prog.noise is not None:
        key, k_noise = jax.random.split(key)
        noise = noisynet.sample_noise(prog.noise, k_noise, (num_envs,))
    if prog.action_quantiles is not None:
        key, k_tau = jax.random.split(key)
        tau = heads.sample_levels(k_tau, num_envs, prog.action_quantiles)

    def values(p: Any, o: jax.Array, levels: jax.Array | None, mem: Any) -> tuple:
        if mem is not None:
            return recurrent.step_values(q_fn, p, mem, o, levels)
        return (q_fn(p, o) if levels is None else q_fn.mean_at(p, o, levels)), None

    if noise is None:
        q_values, carry = values(params, obs, tau, memory)
    else:

        def one(n: Any, o: jax.Array, t: jax.Array | None, m: Any) -> tuple:
            row = jax.tree.map(lambda x: x[None], (o, t, m))
            out = values(noisynet.with_noise(params, n), *row)
            return jax.tree.map(lambda x: x[0], out)

        q_values, carry = jax.vmap(one)(noise, obs, tau, memory)
    action = policies.epsilon_greedy(words, q_values, epsilon, mask)
    next_obs, env_state, tr = rollout.step_envs(env, env_params, step_keys, env_state, obs, action)
    memory = None if memory is None else (carry, tr.terminated | tr.truncated)
    return key, action, next_obs, env_state, tr, memory


FINAL_STATISTIC = "greedy evaluation return at the final evaluation point, over seeds"


def learning_curve(metrics: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(x [T], returns [H, S, T], x label, y label) of a batch's metrics, for figures."""
    return metrics["env_steps"][0, 0], metrics["eval_return"], "env steps", "greedy return"


def final_returns(metrics: dict[str, np.ndarray]) -> np.ndarray:
    """The per-run number summaries report (see :data:`FINAL_STATISTIC`), [H, S]."""
    return metrics["eval_return"][:, :, -1]


def progress_total(config: Any) -> tuple[int, str]:
    """(units a run reports to ``progress`` in all, unit name): env steps."""
    return config.actual_total_steps, "step"


def algorithm(loss_batch: str, **fields: Any) -> Algorithm:
    """The :class:`~qlearn.algos.algorithm.Algorithm` record of a deep-Q algorithm: its own
    ``fields`` (name, classes, ``make_train``, checks, stages) and the reports every deep-Q
    algorithm shares (the greedy-return curve, its final point, progress in env steps,
    ``loss_index`` picking from ``config.loss``, the hyperparameters its ``loss_batch``
    losses declare)."""
    return Algorithm(
        learning_curve=learning_curve,
        final_returns=final_returns,
        final_statistic=FINAL_STATISTIC,
        progress_total=progress_total,
        indexed_hparams=(("loss_index", "loss"),),
        extra_hparams=lambda config: losses.declared_hparams(config.loss, loss_batch),
        **fields,
    )
