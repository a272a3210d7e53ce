"""Classifier heads.

A head is a linen module called as ``head(features, train)`` on pooled float32 features
``(B, D)``. It returns float32 logits ``(B, num_classes)``, or a ``(logits, extras)`` pair
whose ``extras`` dict ``Classifier`` merges into its ``aux`` output.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Array = Any


def torch_linear_init(fan_in: int) -> nn.initializers.Initializer:
  """``nn.Linear``-style init: uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``.

  Used for both kernel and bias (PyTorch's default ``reset_parameters`` gives the kernel
  exactly this range via kaiming_uniform with ``a=sqrt(5)``).
  """
  bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

  return init


class LinearClassifier(nn.Module):
  """A single dense layer with bias (parameters under ``"fc"``).

  Attributes:
    num_classes: number of output logits.
    dtype: computation dtype; parameters and returned logits are float32.
  """

  num_classes: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Array, train: bool = False) -> Array:
    del train  # same call signature as heads that behave differently in training
    init = torch_linear_init(features.shape[-1])
    logits = nn.Dense(
      self.num_classes,
      use_bias=True,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      kernel_init=init,
      bias_init=init,
      name="fc",
    )(features)
    return logits.astype(jnp.float32)
