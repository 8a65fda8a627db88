"""Value heads as objects: what each head's outputs mean, from the head itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import heads, hparams
from qlearn.algos import dqn
from qlearn.types import ConfigError


def test_each_head_reads_its_outputs_and_support_as_its_definition_says():
    """q̂ from outputs [B, A, K]: scalar the output, categorical Σ softmax(ℓ)·z over atoms
    spanning [v_min, v_max], histogram the same over the bin centres, quantile and iqn the
    mean; the support comes from the hyperparameters."""
    out = jax.random.normal(jax.random.key(0), (3, 2, 5))
    hp = dqn.DQNHParams(v_min=-2.0, v_max=6.0)
    p = np.exp(out) / np.exp(out).sum(-1, keepdims=True)
    atoms, centres = np.linspace(-2, 6, 5), -2 + 8 / 5 * (np.arange(5) + 0.5)
    cases = {
        "categorical": (atoms, (p * atoms).sum(-1)),
        "histogram": (centres, (p * centres).sum(-1)),
        "quantile": (None, out.mean(-1)),
        "iqn": (None, out.mean(-1)),
    }
    for kind, (support, expected) in cases.items():
        head = heads.make(kind, 5)
        got_support = head.support(hp)
        if support is None:
            assert got_support is None
        else:
            np.testing.assert_allclose(got_support, support, rtol=1e-6)
        np.testing.assert_allclose(head.expected(out, got_support), expected, rtol=1e-5)
    np.testing.assert_array_equal(heads.make("scalar").expected(out[..., :1], None), out[..., 0])
    assert [k for k, h in heads.HEADS.items() if h.takes_levels] == ["iqn"]
    assert {k: h.truth for k, h in heads.HEADS.items() if h.truth} == {
        "categorical": "categorical",
        "quantile": "quantile",
        "iqn": "quantile",
    }


def test_a_config_names_its_head_and_its_size_field():
    assert dqn.DQNConfig(head="categorical", loss="c51", num_atoms=7).value_head == (
        heads.Categorical(7)
    )
    assert dqn.DQNConfig(head="iqn", loss="iqn", num_quantiles=4, dueling=True).value_head == (
        heads.IQN(4, dueling=True)
    )
    shared = dqn.DQNConfig(head="iqn", loss="iqn", num_quantiles=4, iqn_shared_levels=True)
    assert shared.value_head == heads.IQN(4, shared_levels=True)
    assert dqn.DQNConfig().value_head == heads.SCALAR
    with pytest.raises(ConfigError, match="must be one of scalar, categorical"):
        dqn.DQNConfig(head="gaussian")
    with pytest.raises(ConfigError, match="num_quantiles = 1 must be an integer ≥ 2"):
        dqn.DQNConfig(num_quantiles=1)


def test_a_head_spanning_values_refuses_an_empty_interval():
    head = heads.make("histogram", 11)
    batch = hparams.grid(dqn.DQNHParams, {"v_min": [0.0, 5.0], "v_max": [5.0]})
    with pytest.raises(hparams.HParamError, match="v_min = 5 must be < v_max = 5"):
        head.check_hparams(batch)
    heads.make("quantile", 11).check_hparams(batch)  # no support: nothing to check
    head.check_hparams(hparams.grid(dqn.DQNHParams, {"v_min": [-1.0], "v_max": [jnp.inf]}))
