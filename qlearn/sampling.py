"""Exact integer sampling from raw PRNG words (uint32), for the draws inside training loops.

``jax.random.uniform`` gives float32 values on a grid of 2⁻²³: ⌊u·n⌋ then reaches at most 2²³
distinct indices and is up to ±7% non-uniform at n = 10⁶ (8 or 9 grid points per index), and a
test u < ε resolves ε only to 1.2e-7. Here an index is drawn from 64 random bits and an event
of probability p from 32, in uint32 arithmetic (no 64-bit mode needed):

* :func:`uniform_index`: i = ⌊n·W / 2⁶⁴⌋ for W uniform on [0, 2⁶⁴) — every i in [0, n) has
  probability within 2⁻⁶⁴·n of 1/n, for any n < 2³¹;
* :func:`bernoulli`: true with probability p to within 2⁻²⁴·p + 2⁻³².

One ``jax.random.bits`` call draws the words of many decisions at once (on CPU every PRNG call
inside a loop body is a loop of its own, so fewer call sites are cheaper).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

WORDS_PER_INDEX = 2


def _mul_wide(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(high, low) 32-bit halves of the 64-bit product of uint32 arrays ``a`` and ``b``."""
    mask = jnp.uint32(0xFFFF)
    a0, a1 = a & mask, a >> 16
    b0, b1 = b & mask, b >> 16
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1  # each < 2³², exact
    mid = (p00 >> 16) + (p01 & mask) + (p10 & mask)  # < 3·2¹⁶
    low = (mid << 16) | (p00 & mask)
    high = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)
    return high, low


def uniform_index(words: jax.Array, n: jax.Array | int) -> jax.Array:
    """Indices uniform on [0, n) from ``words`` uint32 [..., 2] (high, low): int32 [...].

    ``n`` (int, traced is fine, broadcastable against ``words[..., 0]``) must be ≥ 1.
    """
    n = jnp.asarray(n).astype(jnp.uint32)
    hi_hi, hi_lo = _mul_wide(n, words[..., 0])  # n·high = hi_hi·2³² + hi_lo
    lo_hi, _ = _mul_wide(n, words[..., 1])  # ⌊n·low / 2³²⌋
    total = hi_lo + lo_hi
    carry = (total < hi_lo).astype(jnp.uint32)
    return (hi_hi + carry).astype(jnp.int32)


def bernoulli(word: jax.Array, p: jax.Array | float) -> jax.Array:
    """True with probability ``p`` (clipped to [0, 1]) from ``word`` uint32 [...]: bool [...]."""
    p = jnp.asarray(p, jnp.float32)
    return (word.astype(jnp.float32) < p * jnp.float32(2.0**32)) | (p >= 1.0)
