import jax
import jax.numpy as jnp

from qlearn import networks


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
