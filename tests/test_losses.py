import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax
from flax import struct
from user_losses import my_zero_loss

from qlearn import heads, hparams, losses, networks, targets
from qlearn.types import Transition


@struct.dataclass
class HParams:
    """The hyperparameters the losses read (an algorithm's HParams has these and more)."""

    gamma: float = hparams.field(0.99, low=0, high=1, help="discount")
    huber_delta: float = hparams.field(1.0, low=0, low_open=True, help="Huber threshold")
    loss_index: int = hparams.field(0, low=0, integer=True, help="which loss")
    v_min: float = hparams.field(-10.0, help="lowest atom")
    v_max: float = hparams.field(10.0, help="highest atom")
    hl_gauss_sigma: float = hparams.field(0.75, low=0, low_open=True, help="σ in bin widths")
    dqn_reg_weight: float = hparams.field(0.1, low=0, help="value penalty")
    munchausen_tau: float = hparams.field(0.03, low=0, low_open=True, help="temperature")
    munchausen_alpha: float = hparams.field(0.9, low=0, high=1, help="bonus weight")
    munchausen_clip: float = hparams.field(-1.0, high=0, help="log-policy clip l0")


B, OBS, A = 8, 3, 4


@pytest.fixture(scope="module")
def setup():
    net = networks.MLPQNetwork(A, hidden_sizes=(5,))
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    obs = jax.random.normal(k1, (B, OBS))
    next_obs = jax.random.normal(k2, (B, OBS))
    batch = Transition(
        obs=obs,
        action=jnp.arange(B, dtype=jnp.int32) % A,
        reward=jnp.linspace(-1, 1, B),
        next_obs=next_obs,
        terminated=jnp.array([0, 1, 0, 0, 1, 0, 0, 0], bool),
        truncated=jnp.array([0, 0, 1, 0, 0, 0, 1, 0], bool),
        steps=jnp.ones(B, jnp.int32),
    )
    online = net.init(k3, obs)
    target = jax.tree.map(lambda x: x + 0.1, online)
    return net.apply, online, target, batch


def value_and_grad(loss_fn, q_fn, online, *rest):
    """(the loss's :class:`~qlearn.types.LossOutput`, ∇ of its ``loss`` w.r.t. the online
    params) for a loss called as ``loss_fn(q_fn, online, *rest)``."""

    def objective(p):
        out = loss_fn(q_fn, p, *rest)
        return out.loss, out

    (_, out), grad = jax.value_and_grad(objective, has_aux=True)(online)
    return out, grad


def analytic_mse_gradient(q_fn, params, batch, y):
    """−2 · mean_i (y_i − q̂_i) ∇q̂_i with y fixed (a numpy array, no graph)."""

    def q_sa(p, i):
        return q_fn(p, batch.obs[i : i + 1])[0, batch.action[i]]

    grads = [jax.grad(q_sa)(params, i) for i in range(B)]
    q = np.array([q_sa(params, i) for i in range(B)])
    weights = -2.0 * (y - q) / B
    return jax.tree.map(lambda *g: sum(w * gi for w, gi in zip(weights, g, strict=True)), *grads)


def numpy_targets(q_fn, target_params, batch, gamma):
    q_next = np.asarray(q_fn(target_params, batch.next_obs))
    discount = gamma * (1.0 - np.asarray(batch.terminated, np.float32))
    return np.asarray(batch.reward) + discount * q_next.max(axis=1)


@pytest.mark.parametrize("use_target_network", [True, False])
def test_semi_gradient_equals_analytic(setup, use_target_network, variant):
    q_fn, online, target, batch = setup
    hp = HParams(gamma=0.9)
    bootstrap = target if use_target_network else online
    loss = functools.partial(losses.semi_gradient_td_loss, regression=losses.mse)
    grad = variant(
        jax.grad(lambda p: loss(q_fn, p, target if use_target_network else p, batch, hp).loss)
    )(online)
    y = numpy_targets(q_fn, bootstrap, batch, 0.9)
    expected = analytic_mse_gradient(q_fn, online, batch, y)
    jax.tree.map(
        lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6), grad, expected
    )

    if not use_target_network:
        # Without the stop_gradient the target's dependence on θ enters the gradient: the
        # residual gradient differs, so the check above really detects a missing stop_gradient.
        def residual(p):
            return losses.residual_gradient_td_loss(q_fn, p, p, batch, hp).loss

        differs = jax.tree.map(
            lambda g, r: not np.allclose(g, r, atol=1e-6), grad, jax.grad(residual)(online)
        )
        assert any(jax.tree.leaves(differs))


def test_huber_gradient_clips_td_error(setup, variant):
    q_fn, online, target, batch = setup
    hp = HParams(gamma=0.9, huber_delta=0.05)
    loss = lambda p: losses.semi_gradient_td_loss(q_fn, p, target, batch, hp).loss
    grad = variant(jax.grad(loss))(online)
    y = numpy_targets(q_fn, target, batch, 0.9)
    q = np.asarray(q_fn(online, batch.obs))[np.arange(B), np.asarray(batch.action)]
    # d/dq̂ huber(y − q̂) = −clip(y − q̂, −κ, κ); express it as the MSE gradient with a fake label
    clipped = np.clip(y - q, -0.05, 0.05)
    expected = analytic_mse_gradient(q_fn, online, batch, q + clipped / 2.0)
    jax.tree.map(
        lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7), grad, expected
    )


def test_truncation_bootstraps_termination_does_not(setup):
    q_fn, online, target, batch = setup
    hp = HParams(gamma=0.9)
    y = np.asarray(losses.td_targets(q_fn, online, target, batch, hp, double_q=False))
    q_next = np.asarray(q_fn(target, batch.next_obs)).max(axis=1)
    r = np.asarray(batch.reward)
    for i in range(B):
        if batch.terminated[i]:
            np.testing.assert_allclose(y[i], r[i], rtol=1e-6)
        else:  # includes the truncated transitions 2 and 6
            np.testing.assert_allclose(y[i], r[i] + 0.9 * q_next[i], rtol=1e-6)


@pytest.mark.parametrize("double_q", [False, True])
def test_targets_never_bootstrap_from_a_masked_action(setup, double_q):
    """Each next state allows only its ARGMIN action: the target must be r + d·q(s', argmin)
    (with Double-Q the online net's argmin is the only choice left, valued by the target net)."""
    q_fn, online, target, batch = setup
    selector = np.asarray(q_fn(online if double_q else target, batch.next_obs))
    only = selector.argmin(axis=1)
    mask = np.eye(A, dtype=bool)[only]
    masked_batch = batch.replace(next_action_mask=jnp.asarray(mask))
    hp = hparams.to_arrays(HParams(gamma=0.9))
    y = losses.td_targets(q_fn, online, target, masked_batch, hp, double_q=double_q)
    value = np.asarray(q_fn(target, batch.next_obs))[np.arange(B), only]
    discount = 0.9 * (1.0 - np.asarray(batch.terminated, np.float32))
    np.testing.assert_allclose(y, np.asarray(batch.reward) + discount * value, rtol=1e-6)
    unmasked = losses.td_targets(q_fn, online, target, batch, hp, double_q=double_q)
    assert not np.allclose(y, unmasked)
    # the residual-gradient loss's bootstrap too
    aux = losses.residual_gradient_td_loss(q_fn, online, target, masked_batch, hp).metrics
    own = np.asarray(q_fn(online, batch.next_obs))
    own_min = own[np.arange(B), np.where(mask, own, np.inf).argmin(1)]
    np.testing.assert_allclose(
        aux["target_mean"], np.mean(np.asarray(batch.reward) + discount * own_min), rtol=1e-5
    )


def test_double_q_selects_with_online_evaluates_with_target(setup):
    q_fn, online, target, batch = setup
    hp = HParams(gamma=0.9)
    y = np.asarray(losses.td_targets(q_fn, online, target, batch, hp, double_q=True))
    a_star = np.asarray(q_fn(online, batch.next_obs)).argmax(axis=1)
    value = np.asarray(q_fn(target, batch.next_obs))[np.arange(B), a_star]
    discount = 0.9 * (1 - np.asarray(batch.terminated, np.float32))
    np.testing.assert_allclose(y, np.asarray(batch.reward) + discount * value, rtol=1e-6)


def test_aux_diagnostics(setup):
    q_fn, online, target, batch = setup
    out = losses.semi_gradient_td_loss(q_fn, online, target, batch, HParams())
    loss, aux = out.loss, out.metrics
    assert set(aux) >= {"q_mean", "target_mean", "td_abs", "q_abs_max"}
    q = np.asarray(q_fn(online, batch.obs))
    np.testing.assert_allclose(
        aux["q_mean"], q[np.arange(B), np.asarray(batch.action)].mean(), rtol=1e-6
    )
    np.testing.assert_allclose(aux["q_abs_max"], np.abs(q).max(), rtol=1e-6)
    assert loss.shape == ()


def test_resolve():
    assert losses.resolve(my_zero_loss, double_q=True).__wrapped__ is my_zero_loss
    assert losses.resolve("user_losses:my_zero_loss", double_q=False).__wrapped__ is my_zero_loss
    assert losses.resolve("mse", double_q=True).__wrapped__.keywords == {
        "regression": losses.mse,
        "double_q": True,
        "rescale": False,
    }
    with pytest.raises(ValueError, match="not one of"):
        losses.resolve("l1", double_q=True)
    with pytest.raises(ValueError, match="cannot be imported"):
        losses.resolve("no_such_module:f", double_q=True)
    assert losses.spec_name(my_zero_loss) == "user_losses:my_zero_loss"


def test_a_loss_of_another_contract_is_refused_by_name(setup):
    """A loss without the ``key`` argument is refused when the config is made (before any
    compile), naming the loss and the arguments; one returning the old (loss, aux) tuple is
    refused when traced, naming the loss and LossOutput."""
    from qlearn.algos import dqn
    from qlearn.types import ConfigError

    with pytest.raises(ConfigError, match=r"'user_losses:my_old_loss' must take \(q_fn, "):
        dqn.DQNConfig(loss="user_losses:my_old_loss")
    q_fn, online, target, batch = setup
    loss_fn = losses.resolve("user_losses:my_tuple_loss", double_q=True)
    with pytest.raises(TypeError, match=r"'user_losses:my_tuple_loss' returned tuple.*LossOutput"):
        loss_fn(q_fn, online, target, batch, HParams(), None)


def test_a_loss_that_samples_gets_a_fresh_key_per_update_and_others_get_none():
    """A record with ``samples=True`` gets the update's key of the ``loss`` stream (its
    random half-batch mask differs from update to update, and the run is reproducible); a
    loss without it is called with key None."""
    from conftest import TINY

    from qlearn.algos import dqn

    seen = []

    def no_key(q_fn, online, target, batch, hp, key):
        seen.append(key)
        return losses.semi_gradient_td_loss(q_fn, online, target, batch, hp, key)

    train = jax.jit(dqn.make_train(dqn.DQNConfig(**TINY, loss="user_losses:SAMPLING")))
    _, m = train(jax.random.key(0), dqn.DQNHParams())
    kept = np.asarray(m["kept"])
    assert np.all((kept > 0.2) & (kept < 0.8)) and np.unique(kept).size == kept.size
    np.testing.assert_array_equal(train(jax.random.key(0), dqn.DQNHParams())[1]["kept"], kept)
    jax.eval_shape(
        dqn.make_train(dqn.DQNConfig(**TINY, loss=no_key)), jax.random.key(0), dqn.DQNHParams()
    )
    assert seen and all(k is None for k in seen)


def test_residual_gradient_includes_the_bootstrap_gradient(setup):
    """∇L = −2/B Σ δ_i (∇q̂(s_i, a_i) − γ_i ∇q̂(s'_i, a*_i)), a* = argmax q̂(s'_i, ·)."""
    q_fn, online, target, batch = setup
    hp = HParams(gamma=0.9)
    grad = jax.grad(lambda p: losses.residual_gradient_td_loss(q_fn, p, target, batch, hp).loss)(
        online
    )
    discount = 0.9 * (1.0 - np.asarray(batch.terminated, np.float32))
    q_next = np.asarray(q_fn(online, batch.next_obs))
    a_star = q_next.argmax(1)
    q = np.asarray(q_fn(online, batch.obs))[np.arange(B), batch.action]
    delta = np.asarray(batch.reward) + discount * q_next.max(1) - q

    def q_at(p, obs, a):
        return q_fn(p, obs[None])[0, a]

    terms = []
    for i in range(B):
        g_now = jax.grad(q_at)(online, batch.obs[i], batch.action[i])
        g_next = jax.grad(q_at)(online, batch.next_obs[i], a_star[i])
        terms.append(
            jax.tree.map(lambda a, b, i=i: -2 * delta[i] * (a - discount[i] * b) / B, g_now, g_next)
        )
    expected = jax.tree.map(lambda *t: sum(t), *terms)
    jax.tree.map(
        lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6), grad, expected
    )


def test_switch_runs_the_indexed_loss_and_vmaps_over_the_index(setup):
    q_fn, online, target, batch = setup
    specs = ("mse", "residual", "user_losses:my_zero_loss")
    switched = losses.resolve(specs, double_q=False)
    singles = [losses.resolve(s, double_q=False) for s in specs]
    for k, single in enumerate(singles):
        hp = HParams(gamma=0.9, loss_index=k)
        out, grad = value_and_grad(switched, q_fn, online, target, batch, hp, None)
        out_k, grad_k = value_and_grad(single, q_fn, online, target, batch, hp, None)
        np.testing.assert_allclose(out.loss, out_k.loss, rtol=1e-6)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grad, grad_k
        )
        assert set(out.metrics) == {"q_mean", "target_mean", "td_abs", "q_abs_max", "my_stat"}
        for name, value in out.metrics.items():
            if name in out_k.metrics:
                np.testing.assert_allclose(value, out_k.metrics[name], rtol=1e-6)
            else:
                assert np.all(np.isnan(value))
        if out_k.priority is None:  # my_zero_loss: NaN priorities of the others' shape
            assert out.priority.shape == (B,) and np.all(np.isnan(out.priority))
        else:
            np.testing.assert_allclose(out.priority, out_k.priority, rtol=1e-6)
    hps = hparams.to_arrays(hparams.grid(HParams, {"gamma": [0.9], "loss_index": [0, 1, 2]}))
    vmapped = jax.vmap(lambda hp: switched(q_fn, online, target, batch, hp, None).loss)(hps)
    expected = [f(q_fn, online, target, batch, HParams(gamma=0.9), None).loss for f in singles]
    np.testing.assert_allclose(vmapped, expected, rtol=1e-6)


def test_resolve_names_and_tuples():
    assert losses.resolve("residual", double_q=True).__wrapped__ is losses.residual_gradient_td_loss
    assert losses.spec_name(("huber", my_zero_loss)) == ["huber", "user_losses:my_zero_loss"]


# --- linear value functions -------------------------------------------------------------------


@pytest.fixture(scope="module")
def linear_batch():
    rng = np.random.default_rng(0)
    n, d = 6, 4
    batch = losses.LinearBatch(
        phi=jnp.asarray(rng.normal(size=(n, d)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=n), jnp.float32),
        discount=jnp.asarray([0.9, 0.9, 0.0, 0.9, 0.9, 0.0], jnp.float32),
        phi_next=jnp.asarray(rng.normal(size=(n, d)), jnp.float32),
        rho=jnp.asarray(rng.uniform(0, 3, size=n), jnp.float32),
    )
    w = jnp.asarray(rng.normal(size=d), jnp.float32)
    h = jnp.asarray(rng.normal(size=d), jnp.float32)
    return w, h, batch


def textbook_steps(w, h, b):
    """Per-sample updates (mean over the batch) written from the papers' equations."""
    phi, phi_n, r, g, rho = (
        np.asarray(x, np.float64) for x in (b.phi, b.phi_next, b.reward, b.discount, b.rho)
    )
    w, h = np.asarray(w, np.float64), np.asarray(h, np.float64)
    delta = r + g * (phi_n @ w) - phi @ w
    h_phi = phi @ h
    secondary = np.mean((rho * (delta - h_phi))[:, None] * phi, 0)
    return {
        "semi_gradient": (np.mean((rho * delta)[:, None] * phi, 0), None),
        "residual_gradient": (
            np.mean((rho * delta)[:, None] * (phi - g[:, None] * phi_n), 0),
            None,
        ),
        "tdc": (
            np.mean(rho[:, None] * (delta[:, None] * phi - (g * h_phi)[:, None] * phi_n), 0),
            secondary,
        ),
        "gtd2": (np.mean((rho * h_phi)[:, None] * (phi - g[:, None] * phi_n), 0), secondary),
    }


@pytest.mark.parametrize("name", sorted(losses.LINEAR_LOSSES))
def test_linear_loss_gradients_are_the_textbook_updates(linear_batch, name, variant):
    w, h, batch = linear_batch
    grad_w, grad_h = variant(jax.grad(losses.LINEAR_LOSSES[name], argnums=(0, 1)))(w, h, batch)
    step_w, step_h = textbook_steps(w, h, batch)[name]
    np.testing.assert_allclose(-grad_w, step_w, rtol=1e-5, atol=1e-6)
    if step_h is None:
        np.testing.assert_array_equal(grad_h, 0.0)
    else:
        np.testing.assert_allclose(-grad_h, step_h, rtol=1e-5, atol=1e-6)


def test_n_step_transitions_bootstrap_gamma_to_the_steps(setup):
    q_fn, online, target, batch = setup
    steps = jnp.array([1, 2, 3, 1, 2, 3, 1, 2], jnp.int32)
    hp = HParams(gamma=0.9)
    y = losses.td_targets(q_fn, online, target, batch.replace(steps=steps), hp, double_q=False)
    q_next = np.asarray(q_fn(target, batch.next_obs)).max(1)
    alive = 1.0 - np.asarray(batch.terminated, np.float32)
    expected = np.asarray(batch.reward) + 0.9 ** np.asarray(steps) * alive * q_next
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-7)


# -- distributional losses ---------------------------------------------------------------------

K = 7  # atoms / quantiles of the distributional tests


def linear_q_function(kind):
    """A linear Q-network obs [B, 3] -> [B, A·K] with a ``kind`` head: its outputs are
    ``obs @ params``, so a loss's value can be recomputed by hand from the same arrays."""
    head = heads.make(kind, 1 if kind == "scalar" else K)
    support = {
        "categorical": heads.categorical_support(-3.0, 3.0, K),
        "histogram": heads.histogram_centres(-3.0, 3.0, K),
    }.get(kind)
    return networks.QFunction(lambda p, obs: obs @ p, head, support)


@pytest.fixture(scope="module")
def dist_setup(setup):
    """(online, target params [3, A·K], the batch with 1..3-step transitions and a mask)."""
    *_, batch = setup
    k1, k2 = jax.random.split(jax.random.key(5))
    online = jax.random.normal(k1, (OBS, A * K))
    target = online + 0.3 * jax.random.normal(k2, (OBS, A * K))
    mask = jnp.ones((B, A), bool).at[::2, 0].set(False)  # action 0 unavailable at half
    batch = batch.replace(steps=jnp.arange(B, dtype=jnp.int32) % 3 + 1, next_action_mask=mask)
    return online, target, batch


def reference_selector(q_next, mask):
    return jnp.where(mask, q_next, -jnp.inf)


@pytest.mark.parametrize("double_q", [False, True])
def test_c51_loss_is_the_mean_of_rlax_per_sample_losses(dist_setup, double_q, variant):
    online, target, batch = dist_setup
    q_fn = linear_q_function("categorical")
    hp = HParams(gamma=0.9, v_min=-3.0, v_max=3.0)
    fn = functools.partial(losses.categorical_td_loss, q_fn, double_q=double_q)
    out = variant(fn)(online, target, batch, hp)
    loss, aux = out.loss, out.metrics
    z = q_fn.support
    discount = 0.9 ** batch.steps.astype(jnp.float32) * (1.0 - batch.terminated)
    logits_tm1, logits_t = q_fn.outputs(online, batch.obs), q_fn.outputs(target, batch.next_obs)
    # the masked selector: the target net's means (Q-learning) or the online net's (Double-Q)
    sel_net = online if double_q else target
    selector = jax.nn.softmax(q_fn.outputs(sel_net, batch.next_obs), -1) @ z
    selector = reference_selector(selector, batch.next_action_mask)
    theirs = jax.vmap(rlax.categorical_double_q_learning, (None, 0, 0, 0, 0, None, 0, 0))(
        z, logits_tm1, batch.action, batch.reward, discount, z, logits_t, selector
    )
    np.testing.assert_allclose(loss, jnp.mean(theirs), rtol=1e-5)
    q_sa = (jax.nn.softmax(logits_tm1, -1) @ z)[jnp.arange(B), batch.action]
    np.testing.assert_allclose(aux["q_mean"], jnp.mean(q_sa), rtol=1e-5)


@pytest.mark.parametrize("double_q", [False, True])
def test_qr_loss_is_the_mean_of_rlax_per_sample_losses(dist_setup, double_q, variant):
    online, target, batch = dist_setup
    q_fn = linear_q_function("quantile")
    hp = HParams(gamma=0.9, huber_delta=1.0)
    fn = functools.partial(losses.quantile_td_loss, q_fn, double_q=double_q)
    out = variant(fn)(online, target, batch, hp)
    loss, aux = out.loss, out.metrics
    discount = 0.9 ** batch.steps.astype(jnp.float32) * (1.0 - batch.terminated)
    dist_tm1, dist_t = q_fn.outputs(online, batch.obs), q_fn.outputs(target, batch.next_obs)
    sel_net = online if double_q else target
    selector = reference_selector(q_fn(sel_net, batch.next_obs), batch.next_action_mask)
    theirs = jax.vmap(rlax.quantile_q_learning, (0, None, 0, 0, 0, 0, 0, None))(
        dist_tm1.transpose(0, 2, 1),
        heads.quantile_midpoints(K),
        batch.action,
        batch.reward,
        discount,
        jnp.broadcast_to(selector[:, None, :], (B, K, A)),
        dist_t.transpose(0, 2, 1),
        1.0,
    )
    np.testing.assert_allclose(loss, jnp.mean(theirs), rtol=1e-5)
    np.testing.assert_allclose(aux["q_abs_max"], jnp.max(jnp.abs(dist_tm1.mean(-1))), rtol=1e-6)


@pytest.mark.parametrize(
    ("kind", "loss_fn"),
    [
        ("categorical", losses.categorical_td_loss),
        ("quantile", losses.quantile_td_loss),
        ("histogram", functools.partial(losses.classification_td_loss, encode="hl_gauss")),
        ("histogram", functools.partial(losses.classification_td_loss, encode="two_hot")),
        ("scalar", losses.dqn_reg_loss),
        ("scalar", losses.munchausen_td_loss),
    ],
)
def test_the_new_losses_pass_no_gradient_into_their_targets(dist_setup, kind, loss_fn):
    online, target, batch = dist_setup
    if kind == "scalar":  # one output per action
        online, target = online[:, :A], target[:, :A]
    q_fn = linear_q_function(kind)
    hp = HParams(gamma=0.9, v_min=-3.0, v_max=3.0)
    for double_q in (False, True):
        fn = functools.partial(loss_fn, double_q=double_q)
        g_target = jax.grad(lambda t, f=fn: f(q_fn, online, t, batch, hp).loss)(target)
        np.testing.assert_array_equal(g_target, np.zeros_like(g_target))
    # bootstrapping from θ itself (no target network): the gradient is the one with the target
    # distribution frozen — the semi-gradient, not the full gradient through the bootstrap
    semi = jax.grad(lambda p: loss_fn(q_fn, p, p, batch, hp).loss)(online)
    frozen = jax.grad(lambda p: loss_fn(q_fn, p, jax.lax.stop_gradient(online), batch, hp).loss)(
        online
    )
    np.testing.assert_allclose(semi, frozen, rtol=1e-6, atol=1e-7)
    assert np.abs(np.asarray(semi)).sum() > 0


def test_distributional_losses_never_bootstrap_from_a_masked_action(dist_setup):
    online, target, batch = dist_setup
    hp = HParams(gamma=0.9, v_min=-3.0, v_max=3.0)
    # at the next state action 0 is by far the best (all its mass on the top atom, or its
    # quantiles lifted by 100), and unavailable at even rows
    for kind, loss_fn in [
        ("categorical", losses.categorical_td_loss),
        ("quantile", losses.quantile_td_loss),
    ]:
        q_fn = linear_q_function(kind)
        lift = jnp.where(jnp.arange(K) == K - 1, 100.0, -100.0) if kind == "categorical" else 100.0
        boost = jnp.zeros((A, K)).at[0].set(lift).reshape(-1)
        boosted = networks.QFunction(lambda p, obs, b=boost: obs @ p + b, q_fn.head, q_fn.support)
        assert np.all(np.argmax(boosted(target, batch.next_obs), -1) == 0)
        masked = batch.replace(reward=jnp.zeros(B), terminated=jnp.zeros(B, bool))
        aux = loss_fn(boosted, online, target, masked, hp).metrics
        all_actions = loss_fn(
            boosted, online, target, masked.replace(next_action_mask=None), hp
        ).metrics
        # without the mask every row bootstraps from action 0's huge value; with it, half do
        expected = 0.9 ** masked.steps.astype(jnp.float32)
        top = 3.0 if kind == "categorical" else None
        assert aux["target_mean"] < all_actions["target_mean"]
        if top is not None:
            np.testing.assert_allclose(all_actions["target_mean"], jnp.mean(expected * top), 1e-4)


def test_built_in_losses_refuse_the_wrong_head():
    losses.check_heads(("c51", "my.module:loss"), "categorical")  # a user's loss: unchecked
    for loss, head, needed in [("c51", "scalar", "categorical"), ("huber", "quantile", "scalar")]:
        with pytest.raises(ValueError, match=f"config.loss = '{loss}' needs config.head = "):
            losses.check_heads(loss, head)
        assert needed in losses.HEAD_OF[loss]


def test_quantile_targets_give_rlax_qr_losses_for_q_and_double_q(variant, distributional_inputs):
    rng = np.random.default_rng(3)
    r_t, discount_t, dist_t, selector = distributional_inputs(rng, atoms=8)
    batch, actions, n = dist_t.shape
    dist_tm1 = jnp.asarray(rng.normal(size=dist_t.shape), jnp.float32)
    a_tm1 = jnp.asarray(rng.integers(0, actions, batch), jnp.int32)
    tau = heads.quantile_midpoints(n)
    dist_sa = dist_tm1[jnp.arange(batch), a_tm1]
    loss = jax.vmap(losses.quantile_huber_loss, (0, None, 0, None))
    target = variant(jax.vmap(targets.quantile_q_learning))
    for kappa in (1.0, 0.5):
        for sel in (jnp.mean(dist_t, -1), selector):  # Q-learning, then Double Q-learning
            ours = loss(dist_sa, tau, target(r_t, discount_t, dist_t, sel), kappa)
            sel_n = jnp.broadcast_to(sel[:, None, :], (batch, n, actions))  # rlax: [N, A]
            theirs = jax.vmap(rlax.quantile_q_learning, (0, None, 0, 0, 0, 0, 0, None))(
                dist_tm1.transpose(0, 2, 1),
                tau,
                a_tm1,
                r_t,
                discount_t,
                sel_n if sel is selector else dist_t.transpose(0, 2, 1),
                dist_t.transpose(0, 2, 1),
                kappa,
            )
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("encode", ["hl_gauss", "two_hot"])
def test_classification_losses_are_the_cross_entropy_against_the_encoded_td_target(
    dist_setup, encode, variant
):
    online, target, batch = dist_setup
    q_fn = linear_q_function("histogram")
    hp = HParams(gamma=0.9, hl_gauss_sigma=0.75)
    fn = functools.partial(losses.classification_td_loss, q_fn, encode=encode, double_q=True)
    out = variant(fn)(online, target, batch, hp)
    loss, aux = out.loss, out.metrics
    # by hand: y from the expectations (Double-Q over the available actions), then the label
    c = np.asarray(q_fn.support)
    y = np.asarray(losses.td_targets(q_fn, online, target, batch, hp, double_q=True))
    if encode == "two_hot":
        labels = np.asarray(rlax.transform_to_2hot(jnp.asarray(y), c[0], c[-1], K))
    else:
        from scipy.stats import norm

        width = c[1] - c[0]
        edges = np.append(c - width / 2, c[-1] + width / 2)
        mass = np.diff(
            norm.cdf(edges[None], np.clip(y, edges[0], edges[-1])[:, None], 0.75 * width)
        )
        labels = mass / mass.sum(-1, keepdims=True)
    logits = np.asarray(q_fn.outputs(online, batch.obs))[np.arange(B), np.asarray(batch.action)]
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(loss, -np.mean(np.sum(labels * log_p, -1)), rtol=1e-4)
    np.testing.assert_allclose(aux["target_mean"], y.mean(), rtol=1e-5)


def test_dqn_reg_is_the_squared_td_error_plus_a_value_penalty(setup, variant):
    q_fn, online, target, batch = setup
    hp = HParams(gamma=0.9, dqn_reg_weight=0.3)
    loss_fn = functools.partial(losses.dqn_reg_loss, double_q=False)
    y = numpy_targets(q_fn, target, batch, 0.9)
    q = np.asarray(q_fn(online, batch.obs))[np.arange(B), np.asarray(batch.action)]
    loss = variant(functools.partial(loss_fn, q_fn))(online, target, batch, hp).loss
    np.testing.assert_allclose(loss, np.mean(0.3 * q + (y - q) ** 2), rtol=1e-5)
    # its gradient: mean_i (w − 2 δ_i) ∇q̂_i, y fixed (the MSE semi-gradient plus w ∇q̂)
    grad = jax.grad(lambda p: loss_fn(q_fn, p, target, batch, hp).loss)(online)
    mse_part = analytic_mse_gradient(q_fn, online, batch, y)

    def mean_q(p):
        return jnp.mean(jnp.take_along_axis(q_fn(p, batch.obs), batch.action[:, None], -1))

    penalty = jax.tree.map(lambda g: 0.3 * g, jax.grad(mean_q)(online))
    jax.tree.map(
        lambda g, a, b: np.testing.assert_allclose(g, a + b, rtol=1e-4, atol=1e-6),
        grad,
        mse_part,
        penalty,
    )


@pytest.mark.parametrize("name", [n for n in losses.BUILTIN if n != "iqn"])
def test_importance_weights_weigh_each_sample_and_priorities_are_per_sample(dist_setup, name):
    """Prioritised replay's contract, for every built-in loss: with ``batch.weight`` w the loss
    (and its gradient) is mean_i w_i·L_i, L_i the loss of sample i alone; ``out.priority``
    is |δ_i| for the scalar TD losses and L_i for the others. (IQN draws its levels
    per batch, so a sample alone gets others: its weights are checked against rlax below.)"""
    online, target, batch = dist_setup
    kind = losses.HEAD_OF[name] or "scalar"  # bc reads any head's values: a scalar one here
    if kind == "scalar":
        online, target = online[:, :A], target[:, :A]
    q_fn = linear_q_function(kind)
    hp = HParams(gamma=0.9, v_min=-3.0, v_max=3.0)
    loss_fn = losses.resolve(name, double_q=True)
    weight = jnp.linspace(0.1, 1.0, B)
    weighted = batch.replace(weight=weight)
    out, grad = value_and_grad(loss_fn, q_fn, online, target, weighted, hp, None)
    singles = [
        value_and_grad(
            loss_fn, q_fn, online, target, jax.tree.map(lambda x, i=i: x[i : i + 1], batch), hp
        )
        for i in range(B)
    ]
    per_sample = np.array([float(s[0].loss) for s in singles])
    np.testing.assert_allclose(out.loss, np.mean(np.asarray(weight) * per_sample), rtol=1e-5)
    expected_grad = sum(float(w) * s[1] for w, s in zip(weight, singles, strict=True)) / B
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
    td = kind == "scalar" and name != "bc"  # TD losses' priority is |δ|, the others' L_i
    expected = [float(s[0].metrics["td_abs"]) for s in singles] if td else per_sample
    assert out.priority.shape == (B,)
    np.testing.assert_allclose(out.priority, expected, rtol=1e-5, atol=1e-7)
    unweighted = loss_fn(q_fn, online, target, batch, hp, None).loss
    np.testing.assert_allclose(unweighted, per_sample.mean(), rtol=1e-5)


def test_switch_fills_a_missing_priority_with_nan_of_its_shape(setup):
    q_fn, online, target, batch = setup
    switched = losses.resolve(("huber", "user_losses:my_zero_loss"), double_q=False)
    out = switched(q_fn, online, target, batch, HParams(loss_index=1), None)
    assert out.priority.shape == (B,) and np.all(np.isnan(out.priority))
    out = switched(q_fn, online, target, batch, HParams(loss_index=0), None)
    assert np.all(np.isfinite(out.priority))


def numpy_log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - x.max() - np.log(np.sum(np.exp(x - x.max())))


def numpy_munchausen_targets(q_fn, online, target, batch, hp, double_q):
    """Vieillard et al. 2020's target, one sample at a time in float64."""
    q_t = np.asarray(q_fn(target, batch.next_obs), np.float64)
    q_sel = np.asarray(q_fn(online if double_q else target, batch.next_obs), np.float64)
    q_s = np.asarray(q_fn(target, batch.obs), np.float64)
    mask = np.asarray(batch.next_action_mask)
    tau, alpha, clip = hp.munchausen_tau, hp.munchausen_alpha, hp.munchausen_clip
    out = []
    for i in range(B):
        allowed = mask[i]
        log_pi_t = numpy_log_softmax(q_sel[i][allowed] / tau)
        soft = np.sum(np.exp(log_pi_t) * (q_t[i][allowed] - tau * log_pi_t))
        log_pi = numpy_log_softmax(q_s[i] / tau)[int(batch.action[i])]
        bonus = alpha * tau * min(max(log_pi, clip), 0.0)
        discount = hp.gamma ** int(batch.steps[i]) * (1.0 - float(batch.terminated[i]))
        out.append(float(batch.reward[i]) + bonus + discount * soft)
    return np.array(out)


@pytest.mark.parametrize("double_q", [False, True])
def test_munchausen_loss_is_huber_on_the_papers_target(dist_setup, double_q, variant):
    """Munchausen DQN against a float64 numpy computation of its target at random inputs
    with terminations, truncations, 1..3-step transitions and masked next actions; the
    clip l₀ binds for some samples (τ = 0.3 puts log π between −3 and 0)."""
    online, target, batch = dist_setup
    online, target = online[:, :A], target[:, :A]
    q_fn = linear_q_function("scalar")
    hp = HParams(gamma=0.9, munchausen_tau=0.3)
    y = numpy_munchausen_targets(q_fn, online, target, batch, hp, double_q)
    got = variant(losses.munchausen_targets, static_argnums=0, static_argnames="double_q")(
        q_fn, online, target, batch, hp, double_q=double_q
    )
    np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5)
    q_s = np.asarray(q_fn(target, batch.obs)) / hp.munchausen_tau
    log_pi = np.array([numpy_log_softmax(q_s[i])[int(batch.action[i])] for i in range(B)])
    assert np.any(log_pi < hp.munchausen_clip) and np.any(log_pi > hp.munchausen_clip)
    loss_fn = functools.partial(losses.munchausen_td_loss, double_q=double_q)
    loss = variant(loss_fn, static_argnums=0)(q_fn, online, target, batch, hp).loss
    q_sa = np.asarray(q_fn(online, batch.obs))[np.arange(B), np.asarray(batch.action)]
    td = y - q_sa
    huber = np.where(np.abs(td) <= 1.0, 0.5 * td**2, np.abs(td) - 0.5)
    np.testing.assert_allclose(loss, huber.mean(), rtol=1e-5)


def test_munchausen_without_bonus_tends_to_q_learning_as_the_temperature_falls(dist_setup):
    """α = 0: soft Q-learning, whose soft bootstrap Σ π'(q − τ log π') tends to the max over
    the available actions as τ → 0 (the gap is at most τ·log |A|)."""
    online, target, batch = dist_setup
    online, target = online[:, :A], target[:, :A]
    q_fn = linear_q_function("scalar")
    q_learning = losses.td_targets(q_fn, online, target, batch, HParams(gamma=0.9), double_q=False)
    for tau in (0.1, 1e-3):
        hp = HParams(gamma=0.9, munchausen_tau=tau, munchausen_alpha=0.0)
        soft = losses.munchausen_targets(q_fn, online, target, batch, hp, double_q=False)
        gap = np.asarray(soft - q_learning)
        assert np.all(gap >= -1e-5) and np.all(gap <= tau * np.log(A) + 1e-5)
    assert np.abs(gap).max() < 1e-2


@pytest.fixture(scope="module")
def iqn_setup(dist_setup):
    """An MLP with an iqn head of K levels, its online and target params, and the batch."""
    *_, batch = dist_setup
    net = networks.build("mlp", A, (OBS,), hidden_sizes=(6,), head=heads.make("iqn", K))
    k1, k2 = jax.random.split(jax.random.key(11))
    online = net.init(k1, batch.obs, jnp.full((B, K), 0.5))
    target = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(k2, x.shape), online)
    return networks.QFunction(net.apply, heads.make("iqn", K)), online, target, batch


@pytest.mark.parametrize("double_q", [False, True])
def test_iqn_loss_is_rlax_quantile_q_learning_at_its_sampled_levels(iqn_setup, double_q, variant):
    """IQN: the quantile Huber loss at levels τ ~ U(0, 1) drawn from its key (fresh τ' for
    the target), each sample equal to rlax.quantile_q_learning with those levels; the next
    action maximises the head's midpoint expectation, over the available actions."""
    q_fn, online, target, batch = iqn_setup
    key = jax.random.key(3)
    hp = HParams(gamma=0.9, huber_delta=1.0)
    fn = functools.partial(losses.iqn_td_loss, q_fn, double_q=double_q)
    out = variant(fn)(online, target, batch, hp, key)
    loss = out.loss
    k_online, k_target = jax.random.split(key)
    tau, tau_t = jax.random.uniform(k_online, (B, K)), jax.random.uniform(k_target, (B, K))
    discount = 0.9 ** batch.steps.astype(jnp.float32) * (1.0 - batch.terminated)
    dist_tm1 = q_fn.outputs(online, batch.obs, tau)
    dist_t = q_fn.outputs(target, batch.next_obs, tau_t)
    selector = reference_selector(
        q_fn(online if double_q else target, batch.next_obs), batch.next_action_mask
    )
    theirs = jax.vmap(rlax.quantile_q_learning, (0, 0, 0, 0, 0, 0, 0, None))(
        dist_tm1.transpose(0, 2, 1),
        tau,
        batch.action,
        batch.reward,
        discount,
        jnp.broadcast_to(selector[:, None, :], (B, K, A)),
        dist_t.transpose(0, 2, 1),
        1.0,
    )
    np.testing.assert_allclose(loss, jnp.mean(theirs), rtol=1e-5)
    np.testing.assert_allclose(out.priority, theirs, rtol=1e-5)
    weight = jnp.linspace(0.1, 1.0, B)
    weighted = fn(online, target, batch.replace(weight=weight), hp, key).loss
    np.testing.assert_allclose(weighted, jnp.mean(weight * theirs), rtol=1e-5)
    g_target = jax.grad(lambda t: fn(online, t, batch, hp, key).loss)(target)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(g_target))
    other = fn(online, target, batch, hp, jax.random.key(4)).loss
    assert float(other) != float(loss)  # the levels come from the key
    with pytest.raises(ValueError, match="needs a PRNG key"):
        fn(online, target, batch, hp)


@pytest.mark.parametrize("next_policy", ["target", "online"])
def test_the_munchausen_loss_a_config_names_uses_the_target_network_unless_asked(
    dist_setup, next_policy
):
    """resolve("munchausen") is Vieillard et al.'s loss — π' at s' from the target network —
    whatever double_q says; munchausen_next_policy="online" is the Double-Q-style variant,
    π' from the online network (both against the float64 reference)."""
    online, target, batch = dist_setup
    online, target = online[:, :A], target[:, :A]
    q_fn = linear_q_function("scalar")
    hp = HParams(gamma=0.9, munchausen_tau=0.3)
    q_sa = np.asarray(q_fn(online, batch.obs))[np.arange(B), np.asarray(batch.action)]
    y = numpy_munchausen_targets(q_fn, online, target, batch, hp, next_policy == "online")
    td = y - q_sa
    huber = np.where(np.abs(td) <= 1.0, 0.5 * td**2, np.abs(td) - 0.5).mean()
    kwargs = {} if next_policy == "target" else {"munchausen_next_policy": next_policy}
    for double_q in (True, False):
        loss_fn = losses.resolve("munchausen", double_q=double_q, **kwargs)
        out = loss_fn(q_fn, online, target, batch, hp, None)
        loss, aux = out.loss, out.metrics
        np.testing.assert_allclose(loss, huber, rtol=1e-5)
        np.testing.assert_allclose(aux["target_mean"], y.mean(), rtol=1e-5, atol=1e-6)
    other = numpy_munchausen_targets(q_fn, online, target, batch, hp, next_policy == "target")
    assert np.abs(other - y).max() > 1e-3  # the two variants differ on these inputs


def test_resolve_refuses_an_unknown_munchausen_next_policy():
    with pytest.raises(ValueError, match="munchausen_next_policy = 'both' must be one of"):
        losses.resolve("munchausen", double_q=True, munchausen_next_policy="both")


def test_the_quantile_huber_loss_is_not_divided_by_kappa():
    """The convention of QR-DQN and rlax, Σ_i mean_j |τ_i − 1{u < 0}| L_κ(u): at κ = 2 it is
    rlax's quantile_regression_loss and κ times IQN's paper's L_κ(u)/κ."""
    rng = np.random.default_rng(0)
    dist, target = (jnp.asarray(rng.normal(scale=3, size=n), jnp.float32) for n in (5, 6))
    tau = heads.quantile_midpoints(5)
    ours = losses.quantile_huber_loss(dist, tau, target, 2.0)
    np.testing.assert_allclose(ours, rlax.quantile_regression_loss(dist, tau, target, 2.0), 1e-6)
    u = np.asarray(target)[None, :] - np.asarray(dist)[:, None]
    huber = np.where(np.abs(u) <= 2.0, 0.5 * u**2, 2.0 * (np.abs(u) - 1.0))
    paper = np.sum(np.mean(np.abs(np.asarray(tau)[:, None] - (u < 0)) * huber / 2.0, -1))
    np.testing.assert_allclose(ours, 2.0 * paper, rtol=1e-5)


def recording(q_fn, log):
    """``q_fn`` whose network logs (which params, τ's shape) at each call with levels."""

    def apply(params, obs, tau=None, **options):
        log.append((params, None if tau is None else tau.shape))
        return q_fn.apply(params, obs, tau, **options)

    return networks.QFunction(apply, q_fn.head)


@pytest.mark.parametrize("double_q", [False, True])
def test_iqn_samples_n_online_n_prime_target_and_k_selection_levels(iqn_setup, double_q):
    """N = head.size levels τ for the online values, N' = num_target for the target's, and
    a* chosen at K = num_select fresh levels by the selecting network (the online one with
    double_q); by default N' = N and a* is chosen at the N midpoints. The loss equals
    rlax.quantile_q_learning at exactly those levels."""
    q_fn, online, target, batch = iqn_setup
    key = jax.random.key(3)
    hp = HParams(gamma=0.9, huber_delta=1.0)
    selecting = online if double_q else target
    log = []
    losses.iqn_td_loss(recording(q_fn, log), online, target, batch, hp, key, double_q=double_q)
    assert [(p is target, s) for p, s in log[:1]] == [(True, (B, K))]  # τ' [B, N'] = [B, N]
    assert (log[1][0] is selecting, log[1][1]) == (True, (B, K))  # a*: midpoints [B, N]
    assert [(p is online, s) for p, s in log[2:]] == [(True, (B, K)), (True, (B, K))]  # τ, τ̂
    log.clear()
    fn = functools.partial(losses.iqn_td_loss, double_q=double_q, num_target=5, num_select=9)
    out = fn(recording(q_fn, log), online, target, batch, hp, key)
    loss = out.loss
    shapes = [(p is online, p is target, s) for p, s in log]
    assert shapes[0] == (False, True, (B, 5))  # the target's N' = 5 levels
    assert shapes[1] == (double_q, not double_q, (B, 9))  # a* at K = 9 levels
    assert shapes[2] == (True, False, (B, K))  # the online network's N levels
    k_online, k_target = jax.random.split(key)
    tau, tau_t = jax.random.uniform(k_online, (B, K)), jax.random.uniform(k_target, (B, 5))
    tau_select = jax.random.uniform(jax.random.fold_in(key, 1), (B, 9))
    discount = 0.9 ** batch.steps.astype(jnp.float32) * (1.0 - batch.terminated)
    selector = reference_selector(
        jnp.mean(q_fn.outputs(selecting, batch.next_obs, tau_select), -1), batch.next_action_mask
    )
    theirs = jax.vmap(rlax.quantile_q_learning, (0, 0, 0, 0, 0, 0, 0, None))(
        q_fn.outputs(online, batch.obs, tau).transpose(0, 2, 1),
        tau,
        batch.action,
        batch.reward,
        discount,
        jnp.broadcast_to(selector[:, None, :], (B, 5, A)),
        q_fn.outputs(target, batch.next_obs, tau_t).transpose(0, 2, 1),
        1.0,
    )
    np.testing.assert_allclose(loss, jnp.mean(theirs), rtol=1e-5)
    np.testing.assert_allclose(out.priority, theirs, rtol=1e-5)
    default = losses.iqn_td_loss(q_fn, online, target, batch, hp, key, double_q=double_q).loss
    same = losses.iqn_td_loss(
        q_fn, online, target, batch, hp, key, double_q=double_q, num_target=K
    ).loss
    assert float(same) == float(default)  # N' = N explicitly: the default's numbers


@pytest.mark.parametrize("double_q", [False, True])
def test_iqn_with_shared_levels_is_the_loss_at_one_set_of_levels_for_every_sample(
    iqn_setup, double_q
):
    """``shared_levels``: τ [N], τ' [N'] and τ̃ [K] are drawn once (from the keys the per-sample
    levels use) and passed unbatched, so the embedding runs once per level (the midpoints of
    the metrics' q̂ too); the loss and its gradient are those at the same levels given to every
    sample ([B, N], ...)."""
    q_fn, online, target, batch = iqn_setup
    key = jax.random.key(4)
    hp = HParams(gamma=0.9, huber_delta=1.0)
    log = []
    options = dict(double_q=double_q, num_target=5, num_select=9)
    fn = functools.partial(losses.iqn_td_loss, **options, shared_levels=True)
    fn(recording(q_fn, log), online, target, batch, hp, key)
    assert [s for _, s in log] == [(5,), (9,), (K,), (K,)]  # τ', τ̃, τ, the metrics' τ̂ (shared)
    k_online, k_target = jax.random.split(key)
    tau, tau_t = jax.random.uniform(k_online, (K,)), jax.random.uniform(k_target, (5,))
    tau_select = jax.random.uniform(jax.random.fold_in(key, 1), (9,))

    def every(levels):
        return jnp.broadcast_to(levels, (B, levels.shape[0]))

    def shared(p):
        return fn(q_fn, p, target, batch, hp, key)

    def given(p):
        return losses.quantile_regression_td_loss(
            q_fn, p, target, batch, hp, double_q=double_q, tau=every(tau),
            tau_t=every(tau_t), tau_select=every(tau_select),
        )  # fmt: skip

    (mine, g_mine), (ref, g_ref) = (
        jax.value_and_grad(lambda p, f=f: f(p).loss)(online) for f in (shared, given)
    )
    np.testing.assert_allclose(mine, ref, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_mine), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(shared(online).priority, given(online).priority, rtol=1e-6)


def test_sampled_levels_give_the_mean_of_the_quantile_function_in_expectation():
    """A known iqn head, Z_τ(a) = c_a + d_a τ⁸: the mean at K = 32 levels τ ~ U(0, 1)
    (QFunction.mean_at at heads.sample_levels) averages to ∫₀¹ Z_τ dτ = c_a + d_a/9, and
    its greedy action is the true one, where the mean at 2 midpoints (q̂ of a 2-level head:
    0.25, 0.75) is biased low and picks the other action."""
    c, d = jnp.array([0.35, 0.0]), jnp.array([0.0, 4.0])

    def apply(params, obs, tau):
        values = c[None, None, :] + d[None, None, :] * tau[..., None] ** 8  # [B, T, A]
        return values.transpose(0, 2, 1).reshape(obs.shape[0], -1)  # ordered (action, τ)

    q_fn = networks.QFunction(apply, heads.make("iqn", 2))
    rows, k = 20_000, 32
    obs = jnp.zeros((rows, 1))
    sampled = q_fn.mean_at(None, obs, heads.sample_levels(jax.random.key(0), rows, k))
    assert sampled.shape == (rows, 2)
    sampled = np.asarray(sampled, np.float64)
    truth = np.asarray(c + d / 9, np.float64)
    spread = sampled.std(0) / np.sqrt(rows)
    assert np.all(np.abs(sampled.mean(0) - truth) < 4 * spread + 1e-6)
    midpoint = np.asarray(q_fn(None, obs[:1]))[0]
    np.testing.assert_allclose(midpoint, c + d * (0.25**8 + 0.75**8) / 2, rtol=1e-6)
    assert np.argmax(truth) == 1 and np.argmax(midpoint) == 0
    assert np.argmax(sampled.mean(0)) == 1
    assert 0.6 < np.mean(np.argmax(sampled, -1) == 1) < 0.9  # per decision: noisy


def test_a_user_loss_declares_a_hyperparameter_that_is_swept_traced_and_stored(tmp_path):
    """A loss record with hyperparameters of its own (user_losses.PENALISED), named by its
    import path: a sweep over its penalty_weight compiles once, each run's loss reads its own
    value (traced), the weight moves the training loss, the spec stores it, and a spec read
    back has the same hyperparameters class; out-of-range values are refused by name."""
    from conftest import TINY

    from qlearn import runs, sweep
    from qlearn.algos import dqn
    from qlearn.spec import Spec

    config = dqn.DQNConfig(**TINY, loss="user_losses:PENALISED")
    algorithm = dqn.ALGORITHM
    hparams_cls = algorithm.hparams_for(config)
    assert hparams.names(hparams_cls)[-1] == "penalty_weight"
    assert algorithm.hparams_for(dqn.DQNConfig(**TINY)) is dqn.DQNHParams
    base = dqn.DQNHParams(lr=3e-3)  # the algorithm's own class: penalty_weight at its default
    run = sweep.run(
        config, {"penalty_weight": [0.0, 2.0]}, hparams=base, seeds=1, out=tmp_path / "r"
    )
    seen = np.asarray(run.metrics["weight_seen"])[:, 0, -1]
    np.testing.assert_array_equal(seen, [0.0, 2.0])
    loss = np.asarray(run.metrics["loss"])[:, 0]
    assert np.all(loss[1] > loss[0])  # the penalty is in the loss
    stored = runs.load(tmp_path / "r").spec
    assert stored.to_json()["hparams"]["penalty_weight"] == [0.0, 2.0]
    assert stored.to_json()["hparams"]["lr"] == [0.003, 0.003]
    again = Spec.from_json(stored.to_json())
    assert type(again.batched_hparams()) is hparams_cls
    with pytest.raises(hparams.HParamError, match="penalty_weight"):
        sweep.run(config, {"penalty_weight": [-1.0]}, seeds=1)


def test_a_registered_loss_is_one_entry_and_needs_its_head():
    """register(record) makes its name a config.loss; the head it declares is checked; a
    name taken by another record is refused."""
    from qlearn.algos import dqn
    from qlearn.types import ConfigError

    record = losses.LossRecord(
        "test_categorical_probe", lambda o: my_zero_loss, head="categorical", summary="test"
    )
    losses.register(record)
    try:
        assert losses.register(record) is record  # the same record again: no change
        with pytest.raises(ValueError, match="already registered"):
            losses.register(losses.LossRecord("test_categorical_probe", lambda o: my_zero_loss))
        with pytest.raises(ConfigError, match=r"needs config\.head = 'categorical'"):
            dqn.DQNConfig(loss="test_categorical_probe")
        config = dqn.DQNConfig(loss="test_categorical_probe", head="categorical")
        assert losses.resolve(config.loss, **config.loss_options).__wrapped__ is my_zero_loss
    finally:
        del losses.TABLE["transition"]["test_categorical_probe"]


@pytest.mark.parametrize("double_q", [False, True])
def test_value_rescaled_targets_equal_a_numpy_reference_and_rlax(setup, double_q):
    """R2D2's rescaled target y = h(r + γ^m(1 − terminated)·h⁻¹(q⁻(s′, a*))) on n-step rows
    (m = 1..3), a* the online (Double-Q) or target network's argmax, in float64 numpy; for
    m = 1 without Double-Q rlax's transformed n-step Q-learning (n = 1) gives the same δ."""
    apply, online, target, batch = setup
    batch = batch.replace(steps=jnp.arange(B, dtype=jnp.int32) % 3 + 1)
    hp = HParams(gamma=0.9)
    loss_fn = losses.resolve("huber", double_q=double_q, value_rescaling=True)
    out = loss_fn(apply, online, target, batch, hp)

    def h(x):
        return np.sign(x) * (np.sqrt(np.abs(x) + 1) - 1) + 1e-3 * x

    def h_inv(x):
        return np.sign(x) * (((np.sqrt(1 + 4e-3 * (np.abs(x) + 1 + 1e-3)) - 1) / 2e-3) ** 2 - 1)

    q_next = np.asarray(apply(target, batch.next_obs), np.float64)
    selector = np.asarray(apply(online if double_q else target, batch.next_obs))
    best = q_next[np.arange(B), selector.argmax(-1)]
    discount = 0.9 ** np.asarray(batch.steps) * (1 - np.asarray(batch.terminated))
    y = h(np.asarray(batch.reward, np.float64) + discount * h_inv(best))
    q_sa = np.asarray(apply(online, batch.obs))[np.arange(B), np.asarray(batch.action)]
    np.testing.assert_allclose(out.priority, np.abs(y - q_sa), rtol=1e-5, atol=1e-6)
    assert not np.allclose(
        losses.resolve("huber", double_q=double_q)(apply, online, target, batch, hp).priority,
        out.priority,
    )
    if not double_q:
        one = batch.replace(steps=jnp.ones(B, jnp.int32))
        delta = jax.vmap(
            lambda q, a, r, d, qt: rlax.transformed_n_step_q_learning(
                q[None],
                a[None],
                qt[None],
                jnp.argmax(qt)[None],
                r[None],
                d[None],
                1,
                tx_pair=rlax.SIGNED_HYPERBOLIC_PAIR,
            )[0]
        )(
            apply(online, one.obs),
            one.action,
            one.reward,
            0.9 * (1.0 - one.terminated.astype(jnp.float32)),
            apply(target, one.next_obs),
        )
        ours = loss_fn(apply, online, target, one, hp).priority
        np.testing.assert_allclose(ours, np.abs(delta), rtol=1e-4, atol=1e-5)


def test_value_rescaling_is_refused_by_losses_that_do_not_take_it():
    from qlearn.algos import dqn
    from qlearn.types import ConfigError

    with pytest.raises(ConfigError, match=r"value_rescaling.*'c51'"):
        dqn.DQNConfig(loss="c51", head="categorical", value_rescaling=True)
    dqn.DQNConfig(loss=("huber", "dqn_reg"), value_rescaling=True)


# --- offline: CQL's penalty and behaviour cloning ---------------------------------------------


@struct.dataclass
class CQLHParams(HParams):
    cql_alpha: float = hparams.field(0.5, low=0, help="CQL's α")


def test_cql_penalty_and_its_gradient_match_numpy():
    """On a linear q̂(s, ·) = W x: the penalty mean_i [log Σ_b exp q̂(s_i, b) − q̂(s_i, a_i)] and
    its gradient mean_i (softmax(q̂(s_i, ·)) − onehot(a_i)) ⊗ x_i, written out in numpy."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(A, OBS)).astype(np.float32)
    x = rng.normal(size=(B, OBS)).astype(np.float32)
    a = np.arange(B) % A
    q = x @ w.T
    lse = np.log(np.exp(q).sum(1))
    want = np.mean(lse - q[np.arange(B), a])
    soft = np.exp(q - lse[:, None])
    want_grad = ((soft - np.eye(A)[a]).T @ x) / B

    def penalty(w):
        return jnp.mean(losses.conservative_penalty(jnp.asarray(x) @ w.T, jnp.asarray(a)))

    got, grad = jax.value_and_grad(penalty)(jnp.asarray(w))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(losses.conservative_penalty(jnp.asarray(q), jnp.asarray(a))) > 0)


def test_conservative_adds_alpha_times_the_penalty_and_is_the_loss_itself_at_alpha_zero(setup):
    q_fn, online, target, batch = setup
    huber = losses.resolve("huber", double_q=True)
    cql = losses.conservative(huber)
    base, g_base = value_and_grad(huber, q_fn, online, target, batch, CQLHParams(), None)
    out, g = value_and_grad(cql, q_fn, online, target, batch, CQLHParams(cql_alpha=0.5), None)
    penalty = jnp.mean(losses.conservative_penalty(q_fn(online, batch.obs), batch.action))
    np.testing.assert_allclose(out.loss, base.loss + 0.5 * penalty, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["cql_penalty"], penalty, rtol=1e-6)
    g_pen = jax.grad(
        lambda p: jnp.mean(losses.conservative_penalty(q_fn(p, batch.obs), batch.action))
    )(online)
    for a, b, c in zip(
        jax.tree.leaves(g), jax.tree.leaves(g_base), jax.tree.leaves(g_pen), strict=True
    ):
        np.testing.assert_allclose(a, b + 0.5 * c, rtol=1e-5, atol=1e-7)
    zero, g_zero = value_and_grad(cql, q_fn, online, target, batch, CQLHParams(cql_alpha=0.0), None)
    assert zero.loss == base.loss
    for a, b in zip(jax.tree.leaves(g_zero), jax.tree.leaves(g_base), strict=True):
        np.testing.assert_array_equal(a, b)


def test_cal_ql_penalty_and_its_gradient_match_numpy():
    """Cal-QL's penalty mean_i [log Σ_b exp max(q̂(s_i, b), G_i) − q̂(s_i, a_i)] on a linear
    q̂ = W x, and its gradient mean_i (softmax(max(q̂, G_i)) ⊙ 1[q̂ > G_i] − onehot(a_i)) ⊗ x_i,
    in numpy: the actions below the floor get no push down. At G = −∞ it is CQL's, bitwise."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(A, OBS)).astype(np.float32)
    x = rng.normal(size=(B, OBS)).astype(np.float32)
    a = np.arange(B) % A
    q = (x @ w.T).astype(np.float64)
    g = np.median(q, axis=1) + rng.normal(scale=0.1, size=B)  # some actions below, some above
    g[0] = -np.inf  # a sample whose return is unknown
    floored = np.maximum(q, g[:, None])
    lse = np.log(np.exp(floored).sum(1))
    want = np.mean(lse - q[np.arange(B), a])
    soft = np.exp(floored - lse[:, None]) * (q > g[:, None])
    want_grad = ((soft - np.eye(A)[a]).T @ x) / B
    reference = jnp.asarray(g, jnp.float32)

    def penalty(w):
        q_all = jnp.asarray(x) @ w.T
        return jnp.mean(losses.calibrated_penalty(q_all, jnp.asarray(a), reference))

    got, grad = jax.value_and_grad(penalty)(jnp.asarray(w))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)
    assert 0 < np.sum(q < g[:, None]) < q.size  # the floor bites on some actions only
    q32, a32 = jnp.asarray(x @ w.T), jnp.asarray(a)
    unknown = jnp.full(B, -jnp.inf)
    np.testing.assert_array_equal(
        losses.calibrated_penalty(q32, a32, unknown), losses.conservative_penalty(q32, a32)
    )


def test_calibrated_conservative_is_cqls_loss_where_no_return_is_known(setup):
    """Cal-QL's wrapped loss on a batch whose returns are all unknown (−∞: online replay samples)
    is CQL's, value and gradient, to the bit; a batch without returns is refused."""
    q_fn, online, target, batch = setup
    huber = losses.resolve("huber", double_q=True)
    hp = CQLHParams(cql_alpha=0.5)
    unknown = batch.replace(return_to_go=jnp.full(batch.action.shape, -jnp.inf))
    cql, g_cql = value_and_grad(losses.conservative(huber), q_fn, online, target, batch, hp, None)
    cal = losses.conservative(huber, calibrated=True)
    out, g_out = value_and_grad(cal, q_fn, online, target, unknown, hp, None)
    assert out.loss == cql.loss
    for x, y in zip(jax.tree.leaves(g_out), jax.tree.leaves(g_cql), strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="needs the batch's return_to_go"):
        cal(q_fn, online, target, batch, hp, None)


def test_behaviour_cloning_is_the_cross_entropy_of_the_data_actions(setup):
    q_fn, online, target, batch = setup
    bc = losses.resolve("bc", double_q=True)
    out, grad = value_and_grad(bc, q_fn, online, target, batch, HParams(), None)
    logits = np.asarray(q_fn(online, batch.obs), np.float64)
    a = np.asarray(batch.action)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(out.loss, -np.mean(log_p[np.arange(B), a]), rtol=1e-6)
    np.testing.assert_allclose(out.priority, -log_p[np.arange(B), a], rtol=1e-5)
    assert out.metrics["bc_accuracy"] == np.mean(logits.argmax(1) == a)
    # the gradient of the mean cross-entropy is mean_i (softmax − onehot(a_i)) · ∇q̂(s_i, ·)
    soft = np.exp(log_p)

    def surrogate(p):
        weights = jnp.asarray((soft - np.eye(A)[a]) / B, jnp.float32)
        return jnp.sum(weights * q_fn(p, batch.obs))

    for g, want in zip(
        jax.tree.leaves(grad), jax.tree.leaves(jax.grad(surrogate)(online)), strict=True
    ):
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6)


@struct.dataclass
class DR3HParams(HParams):
    dr3_weight: float = hparams.field(0.3, low=0, help="DR3's c")


def test_dr3_adds_the_feature_dot_product_of_consecutive_states(setup):
    """DR3's penalty on the MLP of ``setup`` (one hidden ReLU layer, no LayerNorm), its features
    written out by hand: φ(x) = relu(x W₀ + b₀); the penalty c · mean_i φ(s_i)·φ(s'_i) over the
    non-terminal transitions (0 for terminal ones), and the loss itself at c = 0."""
    q_fn, online, target, batch = setup
    p = online["params"]["Dense_0"]
    w, b = np.asarray(p["kernel"]), np.asarray(p["bias"])

    def phi(x):
        return np.maximum(np.asarray(x) @ w + b, 0.0)

    dots = np.sum(phi(batch.obs) * phi(batch.next_obs), axis=1)
    dots[np.asarray(batch.terminated)] = 0.0
    huber = losses.resolve("huber", double_q=True)
    base = huber(q_fn, online, target, batch, DR3HParams(), None)
    out = losses.dr3(huber)(q_fn, online, target, batch, DR3HParams(), None)
    np.testing.assert_allclose(out.metrics["dr3_dot"], dots.mean(), rtol=1e-5)
    np.testing.assert_allclose(out.loss, base.loss + 0.3 * dots.mean(), rtol=1e-5)
    off = losses.dr3(huber)(q_fn, online, target, batch, DR3HParams(dr3_weight=0.0), None)
    assert off.loss == base.loss
    # its gradient pushes the features of s and s′ apart: one step lowers the dot product
    grad = jax.grad(lambda q: jnp.mean(losses.feature_dot(q_fn, q, batch)))(online)
    stepped = jax.tree.map(lambda x, g: x - 0.1 * g, online, grad)
    assert jnp.mean(losses.feature_dot(q_fn, stepped, batch)) < dots.mean()
