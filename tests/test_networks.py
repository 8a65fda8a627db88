import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import heads, networks, noisynet


def test_mlp_shapes_and_layer_norm():
    obs = jnp.ones((5, 10, 10, 4))  # image observations are flattened
    net = networks.MLPQNetwork(3, hidden_sizes=(8, 8), layer_norm=True)
    params = net.init(jax.random.key(0), obs)
    assert net.apply(params, obs).shape == (5, 3)
    assert "LayerNorm_0" in params["params"] and "LayerNorm_1" in params["params"]
    plain = networks.MLPQNetwork(3, hidden_sizes=(8,)).init(jax.random.key(0), obs)
    assert not any(k.startswith("LayerNorm") for k in plain["params"])


def test_linear_network_is_a_table_on_one_hot_inputs():
    net = networks.LinearQNetwork(2)
    params = net.init(jax.random.key(0), jnp.zeros((1, 4)))
    assert set(params["params"]["Dense_0"]) == {"kernel"}  # no bias
    kernel = jnp.arange(8.0).reshape(4, 2)
    q = net.apply({"params": {"Dense_0": {"kernel": kernel}}}, jax.nn.one_hot(jnp.array([2]), 4))
    assert q.tolist() == [[4.0, 5.0]]


def test_minatar_network_is_young_and_tian_s():
    obs = jnp.ones((5, 10, 10, 4))
    net = networks.build("cnn", 3, (10, 10, 4), hidden_sizes=(128,))
    params = net.init(jax.random.key(0), obs)["params"]
    assert net.apply({"params": params}, obs).shape == (5, 3)
    # 3×3×4×16 conv (+16), 8·8·16 = 1024 → 128 dense (+128), 128 → 3 (+3)
    sizes = jax.tree.map(lambda x: x.size, params)
    assert sizes["Conv2D_0"] == {"kernel": 3 * 3 * 4 * 16, "bias": 16}
    assert sizes["Dense_0"] == {"kernel": 1024 * 128, "bias": 128}
    assert sizes["Dense_1"] == {"kernel": 128 * 3, "bias": 3}
    normed = networks.build("cnn", 3, (10, 10, 4), layer_norm=True).init(jax.random.key(0), obs)
    assert {"LayerNorm_0", "LayerNorm_1"} <= set(normed["params"])


def param_count(net, obs_shape, *args):
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, *obs_shape)), *args)
    return sum(x.size for x in jax.tree.leaves(shapes["params"]))


def test_the_nature_torso_is_mnih_et_al_s_and_far_smaller_than_minatar_s_on_big_images():
    """84×84×4 → 8×8/4 → 20×20×32 → 4×4/2 → 9×9×64 → 3×3/1 → 7×7×64 = 3136 → 512 → A: the
    Nature DQN's parameters (Mnih et al. 2015), counted by hand; on a 63×63 RGB image it has
    a fortieth of the MinAtar CNN's, whose one stride-1 convolution keeps 61·61·16 features."""
    net = networks.build("nature_cnn", 6, (84, 84, 4), hidden_sizes=(512,))
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 84, 84, 4)))["params"]
    sizes = jax.tree.map(lambda x: x.size, shapes)
    assert sizes == {
        "Conv2D_0": {"kernel": 8 * 8 * 4 * 32, "bias": 32},
        "Conv2D_1": {"kernel": 4 * 4 * 32 * 64, "bias": 64},
        "Conv2D_2": {"kernel": 3 * 3 * 64 * 64, "bias": 64},
        "Dense_0": {"kernel": 7 * 7 * 64 * 512, "bias": 512},
        "Dense_1": {"kernel": 512 * 6, "bias": 6},
    }
    convs = 8 * 8 * 4 * 32 + 32 + 4 * 4 * 32 * 64 + 64 + 3 * 3 * 64 * 64 + 64
    assert param_count(net, (84, 84, 4)) == convs + 3136 * 512 + 512 + 512 * 6 + 6 == 1_687_206
    # 63×63×3 (Navix/XLand/Craftax pixels), both with one dense layer of 128: 14 → 6 → 4
    # (1024 features) against 61·61·16 = 59536
    nature = param_count(networks.build("nature_cnn", 6, (63, 63, 3)), (63, 63, 3))
    minatar = param_count(networks.build("cnn", 6, (63, 63, 3)), (63, 63, 3))
    assert nature == 8 * 8 * 3 * 32 + 32 + convs - (8 * 8 * 4 * 32 + 32) + 1024 * 128 + 128 + 774
    assert (nature, minatar) == (207_910, 7_621_958)
    assert nature < minatar / 35


HEAD_CASES = [
    heads.make(kind, size, dueling)
    for kind, size in (("scalar", 1), ("categorical", 5), ("histogram", 4), ("quantile", 3))
    for dueling in (False, True)
]


@pytest.mark.parametrize("noisy", [False, True])
def test_the_nature_cnn_takes_every_head_dueling_and_noisy(noisy):
    """Output shapes (traced, not run) for every head, dueling or not, noisy or not."""
    obs = jax.ShapeDtypeStruct((2, 36, 40, 3), jnp.float32)  # the smallest it takes: 36
    for head in HEAD_CASES:
        net = networks.build("nature_cnn", 3, (36, 40, 3), hidden_sizes=(16, 8), head=head,
                             noisy=noisy, layer_norm=head.dueling)  # fmt: skip
        variables = jax.eval_shape(net.init, jax.random.key(1), obs)
        assert jax.eval_shape(net.apply, variables, obs).shape == (2, 3 * head.size), head
        # noise in the dense layers (2 hidden, 1 or 2 last) only, never in the convolutions
        noise = variables.get("noise", {})
        assert len(noise) == (2 + 1 + head.dueling if noisy else 0), head
    # iqn: the values at the T levels τ it is given, [B, A·T]
    head = heads.make("iqn", 4, dueling=True)
    net = networks.build("nature_cnn", 3, (36, 40, 3), hidden_sizes=(16,), head=head, noisy=noisy)
    variables = jax.eval_shape(net.init, jax.random.key(1), obs, jnp.full((2, 4), 0.5))
    q_fn = networks.QFunction(net.apply, head)
    tau = jnp.full((2, 7), 0.3)
    assert jax.eval_shape(q_fn.outputs, variables, obs, tau).shape == (2, 3, 7)
    assert jax.eval_shape(q_fn, variables, obs).shape == (2, 3)
    # the embedding φ(τ) is as wide as the last dense layer
    assert variables["params"]["Dense_0"]["kernel"].shape == (networks.IQN_COSINES, 16)


def test_an_image_too_small_for_the_strides_is_refused_in_one_line():
    from qlearn.algos import dqn
    from qlearn.types import ConfigError

    assert networks.smallest_image(networks.NATURE_TORSO) == 36
    assert networks.smallest_image(networks.MINATAR_TORSO) == 3
    networks.build("nature_cnn", 3, (36, 36, 1))
    for shape in ((35, 64, 3), (64, 35, 3)):
        with pytest.raises(ValueError, match=r"at least 36×36 pixels .*; this env's are"):
            networks.build("nature_cnn", 3, shape)
    with pytest.raises(ValueError, match=r"'cnn' needs images of at least 3×3 .* \(2, 9, 1\)"):
        networks.build("cnn", 3, (2, 9, 1))
    with pytest.raises(ValueError, match=r"'nature_cnn' needs image observations"):
        networks.build("nature_cnn", 3, (4,))
    # MinAtar's 10×10 images, before anything compiles
    with pytest.raises(ConfigError, match=r"'nature_cnn' needs images of at least 36×36 pixels "
                       r"\(its 'VALID' convolutions: 8×8 stride 4, 4×4 stride 2, 3×3 stride 1\); "
                       r"this env's are \(10, 10, 4\)") as e:  # fmt: skip
        dqn.DQNConfig(env_id="Breakout-MinAtar", network="nature_cnn")
    assert "\n" not in str(e.value)


def test_dqn_with_the_nature_cnn_trains_on_navix_pixels():
    """Navix's Empty-5x5 rendered in RGB (40×40×3; the Nature torso's 9 → 3 → 1 pixels): DQN
    with the nature_cnn passes its config checks, compiles and trains end to end (400 steps,
    updates from step 100), every metric finite."""
    pytest.importorskip("navix")
    from qlearn import algos

    config = algos.get("dqn").config(
        env_id="navix:Navix-Empty-5x5-v0", env_kwargs={"observation": "rgb"},
        network="nature_cnn", hidden_sizes=(32,), num_envs=2, total_steps=400,
        learning_starts=100, buffer_size=400, batch_size=8, num_evals=2, eval_episodes=1,
        max_episode_steps=20,
    )  # fmt: skip
    dqn = algos.get("dqn")
    _, m = jax.jit(dqn.make_train(config))(jax.random.key(0), dqn.hparams())
    m = {k: np.asarray(v) for k, v in m.items()}
    assert not m["diverged"].any()
    for name in ("loss", "q_mean", "eval_return"):
        assert np.all(np.isfinite(m[name])), name
    assert m["train_episodes"][-1] > 0 and np.all(m["loss"] > 0)  # it did update


@pytest.mark.parametrize(
    "shape, kernel, strides, out",
    [
        ((3, 10, 9, 4), (3, 2), (1, 1), (8, 8)),
        ((2, 23, 21, 4), (8, 8), (4, 4), (4, 4)),  # stride divides kernel: space to depth
        ((2, 13, 10, 3), (4, 3), (2, 3), (5, 3)),
        ((2, 11, 13, 3), (3, 2), (2, 2), (5, 6)),  # 2 ∤ 3: strided patches
    ],
)
def test_conv2d_equals_flax_conv_with_the_same_parameters(shape, kernel, strides, out):
    x = jax.random.normal(jax.random.key(0), shape)
    ours = networks.Conv2D(16, kernel, strides)
    params = ours.init(jax.random.key(1), x)
    reference = nn.Conv(16, kernel_size=kernel, strides=strides, padding="VALID")
    # Same parameter names and shapes, so one set of parameters drives both.
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, reference.init(jax.random.key(1), x)
    )
    y = ours.apply(params, x)
    assert y.shape == (shape[0], *out, 16)
    np.testing.assert_allclose(y, reference.apply(params, x), rtol=1e-5, atol=1e-5)
    # and its gradient with respect to the kernel too
    grads = [
        jax.grad(lambda p, m=m: jnp.sum(m.apply(p, x) ** 2))(params) for m in (ours, reference)
    ]
    np.testing.assert_allclose(
        grads[0]["params"]["kernel"], grads[1]["params"]["kernel"], rtol=1e-4, atol=1e-4
    )


def test_build_refuses_a_cnn_on_vector_observations_and_unknown_kinds():
    with pytest.raises(
        ValueError, match=r"needs image observations \[H, W, C\]; this env's are \(4,\)"
    ):
        networks.build("cnn", 2, (4,))
    with pytest.raises(ValueError, match="must be one of mlp, linear, cnn, nature_cnn"):
        networks.build("resnet", 2, (4,))


def test_q_functions_give_the_expected_value_of_their_heads():
    obs = jax.random.normal(jax.random.key(0), (5, 3))
    w = jax.random.normal(jax.random.key(1), (3, 2 * 4))  # A = 2 actions, K = 4 per action

    def apply(p, o):
        return o @ p

    z = heads.categorical_support(-1.0, 2.0, 4)
    np.testing.assert_allclose(z, [-1, 0, 1, 2], atol=1e-6)
    np.testing.assert_allclose(heads.quantile_midpoints(4), [1 / 8, 3 / 8, 5 / 8, 7 / 8])
    out = np.asarray(obs @ w).reshape(5, 2, 4)
    categorical = networks.QFunction(apply, heads.make("categorical", 4), z)
    np.testing.assert_allclose(categorical.outputs(w, obs), out, rtol=1e-6)
    probs = np.exp(out) / np.exp(out).sum(-1, keepdims=True)
    np.testing.assert_allclose(categorical(w, obs), probs @ np.asarray(z), rtol=1e-5, atol=1e-6)
    quantile = networks.QFunction(apply, heads.make("quantile", 4))
    np.testing.assert_allclose(quantile(w, obs), out.mean(-1), rtol=1e-5, atol=1e-6)
    scalar = networks.QFunction(apply)  # one value per action: the output itself
    np.testing.assert_array_equal(scalar(w, obs), obs @ w)


@pytest.mark.parametrize("size", [1, 5])
def test_a_dueling_last_layer_is_the_value_plus_centred_advantages(size):
    obs = jax.random.normal(jax.random.key(0), (6, 4))
    head = heads.make("categorical" if size > 1 else "scalar", size, dueling=True)
    net = networks.build("mlp", 3, (4,), hidden_sizes=(8,), head=head)
    params = net.init(jax.random.key(1), obs)
    value_layer, adv_layer = params["params"]["Dense_1"], params["params"]["Dense_2"]
    assert value_layer["kernel"].shape == (8, size) and adv_layer["kernel"].shape == (8, 3 * size)
    out = net.apply(params, obs).reshape(6, 3, size)
    # the actions' mean is the value stream; with the advantage stream at zero, every action
    # is worth the value
    zero_adv = jax.tree.map(jnp.zeros_like, adv_layer)
    flat = net.apply({"params": {**params["params"], "Dense_2": zero_adv}}, obs).reshape(6, 3, size)
    np.testing.assert_allclose(flat, np.broadcast_to(flat[:, :1], flat.shape), atol=1e-6)
    np.testing.assert_allclose(out.mean(axis=1), flat[:, 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[:, 0], out[:, 1])
    with pytest.raises(ValueError, match=r"dueling needs .* 'mlp', 'cnn' or 'nature_cnn'"):
        networks.build("linear", 3, (4,), head=head)
    cnn = networks.build("cnn", 3, (10, 10, 4), head=head)
    images = jnp.zeros((2, 10, 10, 4))
    assert cnn.apply(cnn.init(jax.random.key(0), images), images).shape == (2, 3 * size)


def test_an_iqn_head_gives_the_values_at_the_levels_it_is_given():
    head = heads.make("iqn", 8, dueling=True)
    net = networks.build("mlp", 3, (4,), hidden_sizes=(16,), head=head)
    obs = jax.random.normal(jax.random.key(0), (5, 4))
    params = net.init(jax.random.key(1), obs, jnp.full((5, 2), 0.5))
    q_fn = networks.QFunction(net.apply, head)
    tau = jax.random.uniform(jax.random.key(2), (5, 2))
    at_tau = q_fn.outputs(params, obs, tau)
    assert at_tau.shape == (5, 3, 2)
    # the same level gives the same value, wherever it sits among the levels
    swapped = q_fn.outputs(params, obs, tau[:, ::-1])
    np.testing.assert_allclose(at_tau[:, :, ::-1], swapped, rtol=1e-6)
    # q̂ is the mean at the 8 midpoints τ̂
    np.testing.assert_allclose(q_fn(params, obs), q_fn.outputs(params, obs).mean(-1), rtol=1e-6)
    np.testing.assert_allclose(
        q_fn.outputs(params, obs),
        q_fn.outputs(params, obs, jnp.broadcast_to(heads.quantile_midpoints(8), (5, 8))),
    )
    # levels [T] shared by the batch (the products x ⊙ φ never formed): the values at those
    # levels for every sample, to rounding, with the same parameters
    shared, tiled = (
        q_fn.outputs(params, obs, tau[0]),
        q_fn.outputs(params, obs, jnp.tile(tau[0], (5, 1))),
    )
    np.testing.assert_allclose(shared, tiled, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dueling", [False, True])
def test_the_mean_at_shared_levels_is_the_mean_of_the_values_there(dueling):
    """mean_at with levels [T] shared by the batch takes the mean inside the network (the last
    layer once, at the mean embedding: it is affine); it equals the mean of the T outputs, and
    a head made with shared_levels gives q̂ that way at its midpoints, equal to the per-sample
    midpoints' q̂ to rounding. Without shared levels the option is refused."""
    head = heads.make("iqn", 8, dueling=dueling)
    net = networks.build("mlp", 3, (4,), hidden_sizes=(16,), head=head)
    obs = jax.random.normal(jax.random.key(0), (5, 4))
    params = net.init(jax.random.key(1), obs, jnp.full((5, 2), 0.5))
    q_fn = networks.QFunction(net.apply, head)
    tau = jax.random.uniform(jax.random.key(2), (6,))
    mean = q_fn.mean_at(params, obs, tau)
    assert mean.shape == (5, 3)
    np.testing.assert_allclose(mean, q_fn.outputs(params, obs, tau).mean(-1), rtol=1e-5, atol=1e-6)
    shared_head = heads.IQN(8, dueling, shared_levels=True)
    np.testing.assert_allclose(
        networks.QFunction(net.apply, shared_head)(params, obs),
        q_fn(params, obs),
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="shared by the batch"):
        net.apply(params, obs, jnp.tile(tau, (5, 1)), mean_levels=True)
    with pytest.raises(ValueError, match=r"iqn' needs config\.network = 'mlp', 'cnn' or 'nature"):
        networks.build("linear", 3, (4,), head=heads.make("iqn", 8))


def test_a_noisy_layer_is_its_mean_plus_factorised_gaussian_noise(variant):
    """y = (μ_W + σ_W ⊙ f(ε_in) f(ε_out)ᵀ)ᵀx + μ_b + σ_b ⊙ f(ε_out), f(ε) = sgn(ε)√|ε|
    (Fortunato et al. 2018), against numpy; μ ~ U[±1/√p] and σ = 1/√p at initialisation;
    without noise the layer is its mean; the gradient reaching σ_W is x g ⊙ f(ε_in)f(ε_out)ᵀ."""
    p, q = 9, 4
    layer = noisynet.NoisyDense(q)
    x = jax.random.normal(jax.random.key(0), (6, p))
    variables = layer.init(jax.random.key(1), x)
    params, zeros = noisynet.split_variables(variables)
    mu_w, mu_b = params["params"]["kernel"], params["params"]["bias"]
    assert np.all(np.abs(mu_w) <= 1 / 3) and np.std(mu_w) > 0.1  # U[−1/3, 1/3]: sd 0.19
    np.testing.assert_allclose(params["params"]["sigma_kernel"], np.full((p, q), 1 / 3))
    np.testing.assert_allclose(params["params"]["sigma_bias"], np.full(q, 1 / 3))
    assert jax.tree.map(jnp.shape, zeros) == {"eps_in": (p,), "eps_out": (q,)}
    params = {"params": {**params["params"], "sigma_kernel": mu_w * 2 + 0.1}}  # not constant
    noise = noisynet.sample_noise(zeros, jax.random.key(2))
    apply = variant(layer.apply)
    f = lambda e: np.sign(e) * np.sqrt(np.abs(e))
    f_in, f_out = f(np.asarray(noise["eps_in"])), f(np.asarray(noise["eps_out"]))
    sig_w, sig_b = (np.asarray(params["params"][k]) for k in ("sigma_kernel", "sigma_bias"))
    expected = x @ (mu_w + sig_w * np.outer(f_in, f_out)) + mu_b + sig_b * f_out
    noisy = apply(noisynet.with_noise(params, noise), x)
    np.testing.assert_allclose(noisy, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(apply(params, x), x @ mu_w + mu_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        apply(noisynet.with_noise(params, zeros), x), apply(params, x), rtol=1e-6
    )
    g = jax.random.normal(jax.random.key(3), (6, q))
    grads = jax.grad(lambda v: jnp.sum(layer.apply(noisynet.with_noise(v, noise), x) * g))(params)
    np.testing.assert_allclose(
        grads["params"]["sigma_kernel"], (x.T @ g) * np.outer(f_in, f_out), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(grads["params"]["sigma_bias"], g.sum(0) * f_out, rtol=1e-5)
    np.testing.assert_allclose(grads["params"]["kernel"], x.T @ g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "nature_cnn"])
def test_noisy_networks_sample_their_noise_and_scale_their_sigmas(kind):
    """Every fully connected layer of a noisy MLP, MinAtar or Nature network is noisy (the
    convolutions are not); fresh noise changes the outputs, the mean network is deterministic;
    σ₀ scales only the σ's; a noisy linear network is refused."""
    shape = {"mlp": (4,), "cnn": (10, 10, 4), "nature_cnn": (36, 36, 3)}[kind]
    head = heads.make("categorical", 5, dueling=True)
    net = networks.build(kind, 3, shape, hidden_sizes=(16,), head=head, noisy=True)
    obs = jax.random.normal(jax.random.key(0), (2, *shape))
    params, zeros = noisynet.split_variables(net.init(jax.random.key(1), obs))
    layers = 3  # the hidden dense layer, the value and the advantage streams
    assert sorted(zeros) == [f"NoisyDense_{i}" for i in range(layers)]
    assert not any(k.startswith("Dense") for k in params["params"])
    batched = noisynet.sample_noise(zeros, jax.random.key(2), (7,))
    assert batched["NoisyDense_0"]["eps_out"].shape == (7, 16)
    a, b = (noisynet.sample_noise(zeros, jax.random.key(k)) for k in (3, 4))
    assert not np.allclose(net.apply(noisynet.with_noise(params, a), obs), net.apply(params, obs))
    assert not np.allclose(
        net.apply(noisynet.with_noise(params, a), obs),
        net.apply(noisynet.with_noise(params, b), obs),
    )
    scaled = noisynet.scale_noise(params, 0.5)
    for name, layer in params["params"].items():
        for leaf, value in layer.items():
            factor = 0.5 if leaf.startswith("sigma_") else 1.0
            np.testing.assert_allclose(scaled["params"][name][leaf], factor * value)
    sigmas = [v for layer in params["params"].values() for k, v in layer.items() if "sigma" in k]
    expected = sum(float(np.abs(s).sum()) for s in sigmas) / sum(s.size for s in sigmas)
    np.testing.assert_allclose(noisynet.mean_noise_scale(params), expected, rtol=1e-6)
    assert np.isnan(noisynet.mean_noise_scale({"params": {"Dense_0": {"kernel": jnp.ones(2)}}}))
    with pytest.raises(ValueError, match=r"noisy needs config\.network = 'mlp', 'cnn' or 'nature"):
        networks.build("linear", 3, (4,), noisy=True)
