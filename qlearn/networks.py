"""Q-networks (flax linen). Each maps a batch of observations [B, *obs_shape] to action values
[B, num_actions]; observations are flattened, so vector and image observations both work."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "swish": nn.swish, "gelu": nn.gelu}


class MLPQNetwork(nn.Module):
    """q̂(s, ·) = W_out h_L + b_out,  h_l = act(LayerNorm?(W_l h_{l-1} + b_l)),  h_0 = flat(s).

    Attributes:
      num_actions: A, the output width.
      hidden_sizes: widths of the hidden layers; ``()`` gives a linear function of the
        observation (with bias).
      activation: one of ``ACTIVATIONS``.
      layer_norm: LayerNorm after each hidden Dense (as in PQN).
    """

    num_actions: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return nn.Dense(self.num_actions)(x)


class LinearQNetwork(nn.Module):
    """q̂(s, a) = φ(s)ᵀ w_a with no bias: tabular when φ(s) is one-hot.

    Attributes:
      num_actions: A.
    """

    num_actions: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        return nn.Dense(self.num_actions, use_bias=False, kernel_init=nn.initializers.zeros)(x)
