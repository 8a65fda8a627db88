"""qlearn: Q-learning and its loss functions in JAX."""

__version__ = "0.1.0"
