"""Datasets: the file format (round trip, refusals, bad files named), behaviour policies with
exact coverage, and collection that follows the behaviour's μ."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from qlearn import datasets, dp, envs


@pytest.fixture(scope="module")
def cliff_expert():
    return datasets.finite_dataset("CliffWalking", "expert", 2_000, seed=0, gamma=0.9)


def test_save_load_round_trip_is_exact_and_keeps_provenance(tmp_path, cliff_expert):
    path = datasets.save(tmp_path / "d.npz", cliff_expert)
    back = datasets.load(path)
    assert len(back) == len(cliff_expert) == 2_000
    for a, b in zip(
        jax.tree.leaves(cliff_expert.transitions), jax.tree.leaves(back.transitions), strict=True
    ):
        np.testing.assert_array_equal(a, b)
        assert np.asarray(a).dtype == np.asarray(b).dtype
    np.testing.assert_array_equal(back.state, cliff_expert.state)
    np.testing.assert_array_equal(back.mu, cliff_expert.mu)
    assert back.meta["behaviour"] == "expert" and back.meta["seed"] == 0
    assert back.meta["schema"] == datasets.SCHEMA and back.env_id == "CliffWalking"


def test_save_never_writes_over_a_dataset_unless_asked(tmp_path, cliff_expert):
    path = datasets.save(tmp_path / "d.npz", cliff_expert)
    before = path.read_bytes()
    with pytest.raises(datasets.DatasetError, match=r"exists: nothing written"):
        datasets.save(path, cliff_expert)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    twice = datasets.concatenate([cliff_expert, cliff_expert], cliff_expert.meta)
    datasets.save(path, twice, overwrite=True)
    assert len(datasets.load(path)) == 4_000


def test_bad_files_are_refused_by_name(tmp_path, cliff_expert):
    with pytest.raises(datasets.DatasetError, match=r"no such dataset file"):
        datasets.load(tmp_path / "missing.npz")
    good = datasets.save(tmp_path / "good.npz", cliff_expert).read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(datasets.DatasetError, match=r"cut.npz: not a readable .npz"):
        datasets.load(cut)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, obs=np.zeros((3, 2)), action=np.zeros(3))
    with pytest.raises(datasets.DatasetError, match=r"foreign.npz: no 'meta' field"):
        datasets.load(foreign)
    other = tmp_path / "other.npz"
    np.savez(other, meta=np.asarray(json.dumps({"schema": "minari/1"})))
    with pytest.raises(datasets.DatasetError, match=r"'minari/1' .* a foreign file"):
        datasets.load(other)
    with np.load(tmp_path / "good.npz") as f:
        arrays = {k: f[k] for k in f.files}
    empty = tmp_path / "empty.npz"
    np.savez(empty, **{k: (v[:0] if k != "meta" and k != "mu" else v) for k, v in arrays.items()})
    with pytest.raises(datasets.DatasetError, match=r"empty.npz: the dataset is empty"):
        datasets.load(empty)
    ragged = tmp_path / "ragged.npz"
    np.savez(ragged, **{**arrays, "reward": arrays["reward"][:-1]})
    with pytest.raises(datasets.DatasetError, match=r"ragged.npz: field 'reward'"):
        datasets.load(ragged)
    with pytest.raises(datasets.DatasetError, match=r"a .npz"):
        datasets.save(tmp_path / "d.h5", cliff_expert)


def test_check_env_names_shape_and_action_mismatches(cliff_expert):
    env, params = envs.make("CliffWalking")
    datasets.check_env(cliff_expert, env, params)
    garnet, garnet_params = envs.make("Garnet")
    with pytest.raises(datasets.DatasetError, match=r"observations of shape"):
        datasets.check_env(cliff_expert, garnet, garnet_params, "config.dataset")
    bad = cliff_expert.transitions.replace(action=cliff_expert.transitions.action + 3)
    with pytest.raises(datasets.DatasetError, match=r"actions in"):
        datasets.check_env(datasets.Dataset(bad, cliff_expert.meta), env, params)


def test_expert_data_take_only_greedy_actions_and_cover_the_optimal_path(cliff_expert):
    _, mdp = envs.make("CliffWalking")
    q_star = np.asarray(dp.value_iteration(mdp, 0.9)[0])
    np.testing.assert_array_equal(
        np.asarray(cliff_expert.transitions.action), q_star.argmax(1)[cliff_expert.state]
    )
    cov = datasets.coverage(cliff_expert, mdp)
    # the deterministic expert walks the 13 cliff-edge steps: the same pairs seen as μ > 0
    assert cov["pairs_seen"] == cov["pairs_mu"] == 13 / np.asarray(dp.reachable_pairs(mdp)).sum()
    uniform = datasets.finite_dataset("CliffWalking", "uniform", 20_000, seed=1, gamma=0.9)
    assert datasets.coverage(uniform, mdp)["pairs_mu"] == 1.0


def test_collected_frequencies_follow_the_exact_mu():
    """Short episodes (Maximization Bias: 1–2 steps), so 40k uniform-random transitions are
    near their long-run frequencies: total variation to the exact μ within 0.01 (its standard
    deviation here is ≈ 0.003)."""
    data = datasets.finite_dataset("MaximizationBias", "uniform", 40_000, seed=3, gamma=0.9)
    _, mdp = envs.make("MaximizationBias")
    freq = data.counts(*mdp.rewards.shape) / len(data)
    assert 0.5 * np.abs(freq - data.mu).sum() < 0.01


def test_mixture_is_half_expert_half_uniform_and_its_mu_the_mix():
    mixed = datasets.finite_dataset("CliffWalking", "mixture", 1_000, seed=0, gamma=0.9)
    expert = datasets.finite_dataset("CliffWalking", "expert", 10, seed=0, gamma=0.9)
    uniform = datasets.finite_dataset("CliffWalking", "uniform", 10, seed=0, gamma=0.9)
    np.testing.assert_allclose(mixed.mu, 0.5 * expert.mu + 0.5 * uniform.mu, atol=1e-7)
    with pytest.raises(datasets.DatasetError, match=r"behaviour 'random'"):
        datasets.finite_dataset("CliffWalking", "random", 10)
    with pytest.raises(datasets.DatasetError, match=r"not a finite MDP"):
        datasets.finite_dataset("CartPole-v1", "uniform", 10)


def test_returns_to_go_sum_each_episode_to_its_end_and_are_unknown_after_the_data_end():
    rewards = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # [T = 3, N = 2]
    end = np.array([[False, True], [True, False], [False, False]])
    want = [[1 + 0.5 * 3, 2], [3, -np.inf], [-np.inf, -np.inf]]
    np.testing.assert_array_equal(datasets.returns_to_go(rewards, end, 0.5), want)


def test_expert_returns_to_go_are_q_star_of_the_data_actions(cliff_expert):
    """Cliff Walking is deterministic and so is the expert: the Monte-Carlo return of each step
    of a finished episode is q*(s, a) exactly; only each env's last, unfinished episode is
    unknown (−∞), at most one 13-step episode per env of the 16."""
    _, mdp = envs.make("CliffWalking")
    q_star = np.asarray(dp.value_iteration(mdp, 0.9)[0])
    g = np.asarray(cliff_expert.transitions.return_to_go)
    known = np.isfinite(g)
    a = np.asarray(cliff_expert.transitions.action)
    np.testing.assert_allclose(g[known], q_star[cliff_expert.state[known], a[known]], rtol=1e-5)
    assert np.all(g[~known] == -np.inf) and 0 < np.sum(~known) <= 16 * 13


def test_dqn_replay_datasets_are_genuine_transitions_of_the_run(tmp_path):
    """The DQN-Replay recipe on Cliff Walking: the dataset is the final replay (as many items as
    the run stored, up to the buffer), and each is a real step of the MDP — obs the features of
    its state, next_obs those of a successor with p(s' | s, a) > 0, the reward r(s, a)."""
    from qlearn.algos import dqn

    config = dqn.DQNConfig(
        env_id="CliffWalking", total_steps=3_000, learning_starts=500, buffer_size=2_000,
        num_envs=4, num_evals=2, hidden_sizes=(16,),
    )  # fmt: skip
    data = datasets.from_dqn_replay(config, dqn.DQNHParams(gamma=0.9), seed=2)
    assert len(data) == 2_000 and data.meta["behaviour"] == "dqn_replay"
    assert data.meta["dqn_total_steps"] == config.actual_total_steps and data.meta["seed"] == 2
    _, mdp = envs.make("CliffWalking")
    features, probs = np.asarray(mdp.features), np.asarray(mdp.transition_probs)
    tr, s = data.transitions, data.state
    np.testing.assert_array_equal(np.asarray(tr.obs), features[s])
    successor = np.argmax(np.asarray(tr.next_obs) @ features.T, axis=1)  # one-hot features
    np.testing.assert_array_equal(np.asarray(tr.next_obs), features[successor])
    assert np.all(probs[s, np.asarray(tr.action), successor] > 0)
    np.testing.assert_array_equal(np.asarray(tr.reward), np.asarray(mdp.rewards)[s, tr.action])
    assert len(datasets.load(datasets.save(tmp_path / "replay.npz", data))) == 2_000
    # the ring, unrolled: item g (g-th written, N per env step in env order) is in slot g mod
    # 2,000 and of env g mod N; each env's steps chain (next_obs = the next step's obs) until
    # an episode ends, and each item's return-to-go is the discounted sum to its episode's end
    # (−∞ for the episodes still running when the run stopped)
    added, n, gamma = config.actual_total_steps, config.num_envs, 0.9
    reward, obs, next_obs = np.asarray(tr.reward), np.asarray(tr.obs), np.asarray(tr.next_obs)
    end = np.asarray(tr.terminated | tr.truncated)
    got = np.asarray(tr.return_to_go)
    for env in range(n):
        slots = [g % 2_000 for g in range(added - 2_000, added) if g % n == env]
        episode: list[int] = []
        for i, j in zip(slots, [*slots[1:], None], strict=True):
            episode.append(i)
            if j is not None and not end[i]:
                np.testing.assert_array_equal(next_obs[i], obs[j])
            if end[i] or j is None:
                rewards = reward[episode]
                for k, slot in enumerate(episode):
                    tail = rewards[k:] @ gamma ** np.arange(len(rewards) - k)
                    want = tail if end[i] else -np.inf
                    np.testing.assert_allclose(got[slot], want, rtol=1e-5)
                episode = []
    assert 20 <= np.isfinite(got).sum() < 2_000  # both kinds are checked
    with pytest.raises(datasets.DatasetError, match="feed-forward DQNConfig"):
        datasets.from_dqn_replay(dataclasses.replace(config, core="gru"))
