"""The finite MDPs of the textbook results qlearn reproduces, and random Garnet MDPs.

Each builder returns ``(FiniteMDP, FiniteMDPParams)`` and is served by
``qlearn.envs.make(name, **kwargs)``. References are to Sutton & Barto, *Reinforcement
Learning: An Introduction*, 2nd ed. (2018).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qlearn.envs.finite import FiniteMDP, FiniteMDPError, FiniteMDPParams, finite_mdp_params

# --- Baird's counterexample (Example 11.1) -----------------------------------------------------
BAIRD_DASHED, BAIRD_SOLID = 0, 1
BAIRD_BEHAVIOUR = np.array([6 / 7, 1 / 7])
"""b(dashed) = 6/7, b(solid) = 1/7 in every state: the behaviour policy of Example 11.1."""
BAIRD_TARGET = np.array([0.0, 1.0])
"""π(solid) = 1: the target policy of Example 11.1."""
BAIRD_INITIAL_WEIGHTS = np.array([1, 1, 1, 1, 1, 1, 10, 1], np.float32)
"""w₀ of Figure 11.2."""


def baird(max_steps_in_episode: int = 1_000) -> tuple[FiniteMDP, FiniteMDPParams]:
    """Baird's counterexample: 7 states, 2 actions, 8 features, all rewards 0, continuing.

    States 0–5 are the book's upper states 1–6, state 6 its lower state 7. The dashed action
    (0) goes to one of the upper states uniformly, the solid action (1) to the lower state.
    Features: φ(i) = 2eᵢ + e₇ for the upper states, φ(6) = e₆ + 2e₇, so v̂(i) = 2wᵢ + w₈ and
    v̂(7) = w₇ + 2w₈ in the book's 1-based numbering. The true values are all 0 (w = 0 solves it
    exactly), yet off-policy semi-gradient TD diverges from w₀ = (1,1,1,1,1,1,10,1).
    """
    n = 7
    p = np.zeros((n, 2, n))
    p[:, BAIRD_DASHED, :6] = 1 / 6
    p[:, BAIRD_SOLID, 6] = 1.0
    phi = np.zeros((n, 8))
    for i in range(6):
        phi[i, i], phi[i, 7] = 2.0, 1.0
    phi[6, 6], phi[6, 7] = 1.0, 2.0
    params = finite_mdp_params(
        p,
        np.zeros((n, 2)),
        np.full(n, 1 / n),
        features=phi,
        max_steps_in_episode=max_steps_in_episode,
    )
    return FiniteMDP(params, "Baird"), params


# --- Cliff walking (Example 6.6) ---------------------------------------------------------------
CLIFF_ROWS, CLIFF_COLS = 4, 12
CLIFF_START, CLIFF_GOAL = 3 * CLIFF_COLS, 3 * CLIFF_COLS + CLIFF_COLS - 1
UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3


def cliff_walking(max_steps_in_episode: int = 10_000) -> tuple[FiniteMDP, FiniteMDPParams]:
    """The 4×12 cliff-walking gridworld: state = row·12 + column, start (3, 0), goal (3, 11).

    Actions up, right, down, left (0–3); moves off the grid leave the agent in place. Every
    transition gives −1, except stepping into the cliff, (3, 1)–(3, 10), which gives −100 and
    sends the agent back to the start. Entering the goal ends the episode. The cliff cells are
    states that can never be occupied. Optimal path along the cliff edge: return −13.
    """
    n = CLIFF_ROWS * CLIFF_COLS
    moves = {UP: (-1, 0), RIGHT: (0, 1), DOWN: (1, 0), LEFT: (0, -1)}
    p = np.zeros((n, 4, n))
    r = np.full((n, 4), -1.0)
    for s in range(n):
        row, col = divmod(s, CLIFF_COLS)
        for a, (dr, dc) in moves.items():
            nr = min(max(row + dr, 0), CLIFF_ROWS - 1)
            nc = min(max(col + dc, 0), CLIFF_COLS - 1)
            if nr == CLIFF_ROWS - 1 and 0 < nc < CLIFF_COLS - 1:  # into the cliff
                p[s, a, CLIFF_START] = 1.0
                r[s, a] = -100.0
            else:
                p[s, a, nr * CLIFF_COLS + nc] = 1.0
    h = np.zeros(n)
    h[CLIFF_START] = 1.0
    terminal = np.zeros(n, bool)
    terminal[CLIFF_GOAL] = True
    params = finite_mdp_params(
        p, r, h, terminal=terminal, max_steps_in_episode=max_steps_in_episode
    )
    return FiniteMDP(params, "CliffWalking"), params


# --- Maximization bias (Example 6.7) -----------------------------------------------------------
MAXBIAS_A, MAXBIAS_B, MAXBIAS_END = 0, 1, 2
MAXBIAS_LEFT, MAXBIAS_RIGHT = 0, 1


def maximization_bias(
    num_b_actions: int = 10, mean: float = -0.1, std: float = 1.0, max_steps_in_episode: int = 100
) -> tuple[FiniteMDP, FiniteMDPParams]:
    """States A (0, the start), B (1) and the end (2, terminal).

    In A only left (0, to B) and right (1, to the end) are available, both with reward 0. In B
    every one of ``num_b_actions`` actions ends the episode with reward N(mean, std²). Any
    episode through B has expected return ``mean`` < 0, so right is optimal, but the max over
    B's noisy estimates makes Q-learning prefer left early on. A's unavailable actions are
    masked out (they would behave like right).
    """
    if num_b_actions < 2:
        raise FiniteMDPError(f"num_b_actions = {num_b_actions} must be ≥ 2")
    n, na = 3, num_b_actions
    p = np.zeros((n, na, n))
    p[MAXBIAS_A, :, MAXBIAS_END] = 1.0
    p[MAXBIAS_A, MAXBIAS_LEFT] = np.eye(n)[MAXBIAS_B]
    p[MAXBIAS_B, :, MAXBIAS_END] = 1.0
    p[MAXBIAS_END, :, MAXBIAS_END] = 1.0  # never acted in
    r = np.zeros((n, na))
    r[MAXBIAS_B] = mean
    std_arr = np.zeros((n, na))
    std_arr[MAXBIAS_B] = std
    mask = np.ones((n, na), bool)
    mask[MAXBIAS_A, 2:] = False
    terminal = np.array([False, False, True])
    params = finite_mdp_params(
        p,
        r,
        np.eye(n)[MAXBIAS_A],
        terminal=terminal,
        action_mask=mask,
        reward_std=std_arr,
        max_steps_in_episode=max_steps_in_episode,
    )
    return FiniteMDP(params, "MaximizationBias"), params


# --- Chain -------------------------------------------------------------------------------------
def chain(
    n_states: int = 10, slip: float = 0.0, max_steps_in_episode: int = 1_000
) -> tuple[FiniteMDP, FiniteMDPParams]:
    """An n-state corridor: start at 0, actions left (0) and right (1); the move goes the other
    way with probability ``slip`` (never below 0). Entering state n−1 ends the episode with
    reward 1; every other transition pays 0 (with slip, an attempt that slips back pays 0: the
    reward is that of the transition that happened, its expectation is in ``rewards``). With
    slip = 0, q*(s, right) = γ^(n−2−s).
    """
    if n_states < 2:
        raise FiniteMDPError(f"n_states = {n_states} must be ≥ 2")
    if not 0 <= slip <= 1:
        raise FiniteMDPError(f"slip = {slip} must be in [0, 1]")
    n = n_states
    p = np.zeros((n, 2, n))
    for s in range(n):
        left, right = max(s - 1, 0), min(s + 1, n - 1)
        p[s, 0, left] += 1 - slip
        p[s, 0, right] += slip
        p[s, 1, right] += 1 - slip
        p[s, 1, left] += slip
    r = np.zeros((n, 2, n))
    r[: n - 1, :, n - 1] = 1.0  # the transition that enters n − 1 pays 1, whatever the action
    terminal = np.eye(n, dtype=bool)[n - 1]
    params = finite_mdp_params(
        p, r, np.eye(n)[0], terminal=terminal, max_steps_in_episode=max_steps_in_episode
    )
    return FiniteMDP(params, f"Chain{n}"), params


# --- Garnet ------------------------------------------------------------------------------------
def garnet(
    n_states: int = 10,
    n_actions: int = 2,
    branching: int = 2,
    seed: int = 0,
    feature_dim: int | None = None,
    feature_kind: str = "gaussian",
    max_steps_in_episode: int = 1_000,
) -> tuple[FiniteMDP, FiniteMDPParams]:
    """A random continuing MDP (Archibald et al. 1995), reproducible from ``seed``.

    Each (s, a) leads to ``branching`` distinct states drawn uniformly, with probabilities from
    a uniform split of [0, 1]; rewards r(s, a) ~ N(0, 1), deterministic given (s, a); uniform
    initial state. Features are one-hot, or, with ``feature_dim``, random features that cannot
    represent every value function: ``feature_kind`` "gaussian" (N(0, 1/d)) or "uniform"
    (U[0, 1), non-negative like Baird's, and far likelier to make off-policy TD unstable).
    """
    if not 1 <= branching <= n_states:
        raise FiniteMDPError(f"branching = {branching} must be in [1, n_states = {n_states}]")
    if n_actions < 1:
        raise FiniteMDPError(f"n_actions = {n_actions} must be ≥ 1")
    rng = np.random.default_rng(seed)
    p = np.zeros((n_states, n_actions, n_states))
    for s in range(n_states):
        for a in range(n_actions):
            successors = rng.choice(n_states, branching, replace=False)
            cuts = np.sort(rng.uniform(size=branching - 1))
            p[s, a, successors] = np.diff(np.concatenate([[0.0], cuts, [1.0]]))
    r = rng.normal(size=(n_states, n_actions))
    phi = None
    if feature_dim is not None:
        if feature_dim < 1:
            raise FiniteMDPError(f"feature_dim = {feature_dim} must be ≥ 1")
        if feature_kind == "gaussian":
            phi = rng.normal(size=(n_states, feature_dim)) / np.sqrt(feature_dim)
        elif feature_kind == "uniform":
            phi = rng.uniform(size=(n_states, feature_dim))
        else:
            raise FiniteMDPError(f"feature_kind = '{feature_kind}' must be 'gaussian' or 'uniform'")
    params = finite_mdp_params(
        p,
        r,
        np.full(n_states, 1 / n_states),
        features=phi,
        max_steps_in_episode=max_steps_in_episode,
    )
    name = f"Garnet({n_states},{n_actions},{branching},seed={seed})"
    return FiniteMDP(params, name), params


# --- T-maze (after Bakker 2001): a finite POMDP --------------------------------------------
TMAZE_FORWARD, TMAZE_BACK, TMAZE_UP, TMAZE_DOWN = 0, 1, 2, 3
TMAZE_CUE_UP, TMAZE_CUE_DOWN, TMAZE_CORRIDOR, TMAZE_JUNCTION = 0, 1, 2, 3
"""The four observations of the T-maze (one-hot features): the two cues, the corridor, the
junction."""


def tmaze(
    length: int = 5, max_steps_in_episode: int | None = None, wrong_reward: float = -1.0
) -> tuple[FiniteMDP, FiniteMDPParams]:
    """A T-maze of corridor length N = ``length`` (after Bakker 2001): a partially observable
    task whose answer must be remembered for N steps.

    Hidden states s = cue·(N + 1) + x: the cue (0: the goal is up, 1: down), drawn uniformly
    at the start, and the position x = 0..N (N the junction); state 2(N + 1) is terminal.
    Actions forward (0), back (1), up (2), down (3): forward and back move along the corridor
    (never past its ends); up and down do nothing before the junction and end the episode at
    it, paying +1 if they match the cue and ``wrong_reward`` w (default −1) if not. Every other
    step pays 0. With w = −1 a guess at the junction is worth 0; Bakker's maze pays +4 and −0.1
    (w = −0.025 at this scale): there walking on and guessing pays (1 + w)/2 > 0 before the
    cue is remembered.

    The observation is one of four one-hot features: the cue at x = 0 (up or down), the
    corridor for 0 < x < N, the junction at x = N — the same under both cues everywhere but at
    the start, so the state is hidden. Closed forms: :func:`tmaze_optimal_return` (an agent
    that remembers the cue) and :func:`tmaze_memoryless_bound` (the best any policy of the
    current observation alone can do). ``max_steps_in_episode`` (default 4(N + 1)) truncates.
    """
    if length < 1:
        raise FiniteMDPError(f"length = {length} must be ≥ 1")
    if not -1.0 <= wrong_reward <= 0.0:
        raise FiniteMDPError(
            f"wrong_reward = {wrong_reward} must lie in [-1, 0] (the closed-form bounds assume it)"
        )
    horizon = 4 * (length + 1) if max_steps_in_episode is None else max_steps_in_episode
    if horizon < length + 1:
        raise FiniteMDPError(
            f"max_steps_in_episode = {horizon} must be ≥ length + 1 = {length + 1} (the steps "
            "to the junction and the choice)"
        )
    cells = length + 1
    n, end = 2 * cells + 1, 2 * cells
    p = np.zeros((n, 4, n))
    r = np.zeros((n, 4))
    phi = np.zeros((n, 4))
    for cue in (0, 1):
        for x in range(cells):
            s = cue * cells + x
            p[s, TMAZE_FORWARD, cue * cells + min(x + 1, length)] = 1.0
            p[s, TMAZE_BACK, cue * cells + max(x - 1, 0)] = 1.0
            for a, goal in ((TMAZE_UP, 0), (TMAZE_DOWN, 1)):
                if x < length:
                    p[s, a, s] = 1.0
                else:
                    p[s, a, end] = 1.0
                    r[s, a] = 1.0 if cue == goal else wrong_reward
            seen = cue if x == 0 else (TMAZE_CORRIDOR if x < length else TMAZE_JUNCTION)
            phi[s, seen] = 1.0
    p[end, :, end] = 1.0  # never acted in
    start = np.zeros(n)
    start[[0, cells]] = 0.5
    terminal = np.eye(n, dtype=bool)[end]
    params = finite_mdp_params(
        p, r, start, terminal=terminal, features=phi, max_steps_in_episode=horizon
    )
    return FiniteMDP(params, f"TMaze{length}"), params


def tmaze_optimal_return(length: int, gamma: float = 1.0) -> float:
    """The optimal expected return of the T-maze of ``length`` N for an agent that remembers
    the cue: N steps forward, then the cue's direction: γ^N (1 undiscounted)."""
    return float(gamma**length)


def tmaze_memoryless_bound(length: int, gamma: float = 1.0) -> float:
    """The best expected return of any policy of the current observation alone (memoryless,
    stochastic allowed) in the T-maze of ``length`` N: γ^N / 2, for every ``wrong_reward`` w
    in [−1, 0].

    At the junction such a policy picks up with some probability q whatever the cue; if it
    reaches the junction with probability a_c under cue c (it can tell the cues apart only at
    the start, e.g. walk on under one and stay under the other), its expected return is
    ½ [a_0 (q + (1 − q) w) + a_1 (q w + 1 − q)], at best reached in N steps. Each bracket
    counts at most max(0, ·), and their sum, piecewise linear in q, peaks at q = 0 or 1 at 1
    (as w ≤ 0): the bound, attained by going on under one cue only and choosing that cue's
    side. Walking on under both cues and guessing earns (1 + w)/2 ≤ ½."""
    return float(gamma**length / 2)


CATALOG: dict[str, Callable[..., tuple[FiniteMDP, FiniteMDPParams]]] = {
    "Baird": baird,
    "CliffWalking": cliff_walking,
    "MaximizationBias": maximization_bias,
    "Chain": chain,
    "Garnet": garnet,
    "TMaze": tmaze,
}
"""qlearn's own env ids -> builder(**kwargs)."""
