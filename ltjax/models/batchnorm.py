"""BatchNorm as PyTorch computes and keeps its statistics, the one normalisation layer of the
backbones.

Two differences from ``flax.linen.BatchNorm`` with its defaults, both to follow the references
(PyTorch's ``BatchNorm2d``):

* The running variance is the average of the unbiased batch variance, ``n / (n - 1)`` times
  the biased one (``n`` = batch x height x width values per channel); flax averages the
  biased one. The references' checkpoints, their frozen-BatchNorm cRT/LWS recipes (which
  update the statistics under class-aware sampling) and every evaluation through running
  statistics follow PyTorch's convention. The difference per update is ``var / (n - 1)``:
  about 4e-5 of the variance at the references' batch 512 on 7x7 maps, 1/7 at a per-device
  batch of 8 on 1x1 maps.
* The batch variance is computed in two passes, ``mean((x - mean)^2)``, as PyTorch does, not
  as ``mean(x^2) - mean(x)^2`` (flax's ``use_fast_variance``), which cancels
  catastrophically when the mean dwarfs the spread: compiled with ltjax's CPU options
  (``ltjax.train.compile_options``), a CIFAR ResNet's gradients were 1.6% off float64 that
  way, 1e-7 with two passes.

A training batch is normalised with its biased variance, as in both frameworks. Everything
else is flax's layer as ltjax used it: the same variables (``params``: ``scale``, ``bias``;
``batch_stats``: ``mean``, ``var``), statistics in float32 whatever the computation dtype,
momentum in flax's convention (0.9 here is PyTorch's 0.1), the same normalisation
arithmetic. Under jit with the batch sharded, the statistics span the global batch (XLA
inserts the reduction).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

Dtype = Any


class BatchNorm(nn.Module):
  """Batch normalisation over every axis but the last, with PyTorch's statistics.

  Attributes:
    use_running_average: normalise with the running statistics (inference) instead of the
      batch's, and leave them unchanged.
    momentum: weight of the old running value (flax's convention: 1 - PyTorch's momentum).
    epsilon: added to the variance.
    dtype: dtype of the output (the statistics and the arithmetic are float32).
  """

  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    features = x.shape[-1]
    axes = tuple(range(x.ndim - 1))
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
    scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      xf = x.astype(jnp.float32)
      mean = xf.mean(axes)
      var = jnp.square(xf - mean).mean(axes)
      if not self.is_initializing():
        n = x.size // features
        if n < 2:
          raise ValueError(
            f"BatchNorm in training mode needs more than one value per channel, got input "
            f"shape {x.shape}; use a larger batch or input size."
          )
        unbiased = var * (n / (n - 1))
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * unbiased
    y = (x - mean) * (lax.rsqrt(var + self.epsilon) * scale) + bias
    return jnp.asarray(y, self.dtype)
