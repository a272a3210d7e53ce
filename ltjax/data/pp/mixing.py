"""mixup and CutMix: batch operations the train step runs on device.

* mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018):
  ``x = lam x + (1 - lam) x[perm]``, ``lam ~ Beta(alpha, alpha)``, one per batch.
* CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
  Localizable Features", ICCV 2019, Alg. A1): a box of ``x[perm]`` pasted into ``x``, the
  box of area ``(1 - lam) H W`` at a uniformly random centre, clipped to the image; ``lam``
  then becomes the kept area's fraction.

The loss of a mixed batch is ``lam L(y) + (1 - lam) L(y[perm])`` for every loss (both
papers' ``mixup_criterion``). With both alphas > 0 each batch uses one of the two with
probability 0.5 (the convention of timm's ``Mixup``). The batch is mixed with a random
permutation of itself (Zhang et al.'s ``torch.randperm``), across the whole global batch.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Mixed(NamedTuple):
  """A mixed batch: ``images`` and, for the loss, ``perm`` and ``lam``."""

  images: jax.Array
  perm: jax.Array
  lam: jax.Array


def mixup(key: jax.Array, images: jax.Array, alpha: float) -> Mixed:
  """``lam x + (1 - lam) x[perm]`` with ``lam ~ Beta(alpha, alpha)``; float images."""
  k_lam, k_perm = jax.random.split(key)
  lam = jax.random.beta(k_lam, alpha, alpha).astype(jnp.float32)
  perm = jax.random.permutation(k_perm, images.shape[0])
  mixed = lam * images + (1.0 - lam) * images[perm]
  return Mixed(mixed.astype(images.dtype), perm, lam)


def cutmix_box(key: jax.Array, lam: jax.Array, height: int, width: int):
  """(y1, y2, x1, x2) of CutMix's box: sides ``int(H sqrt(1 - lam))``, ``int(W sqrt(1 -
  lam))`` around a uniform centre, half-sides by integer division, clipped to the image
  (the paper's ``rand_bbox``)."""
  k_y, k_x = jax.random.split(key)
  cut = jnp.sqrt(1.0 - lam)
  cut_h = jnp.floor(height * cut).astype(jnp.int32)
  cut_w = jnp.floor(width * cut).astype(jnp.int32)
  cy = jax.random.randint(k_y, (), 0, height)
  cx = jax.random.randint(k_x, (), 0, width)
  y1 = jnp.clip(cy - cut_h // 2, 0, height)
  y2 = jnp.clip(cy + cut_h // 2, 0, height)
  x1 = jnp.clip(cx - cut_w // 2, 0, width)
  x2 = jnp.clip(cx + cut_w // 2, 0, width)
  return y1, y2, x1, x2


def cutmix(key: jax.Array, images: jax.Array, alpha: float) -> Mixed:
  """A box of ``x[perm]`` pasted into ``x``; ``lam`` = the fraction of ``x`` kept. NHWC."""
  k_lam, k_perm, k_box = jax.random.split(key, 3)
  lam = jax.random.beta(k_lam, alpha, alpha).astype(jnp.float32)
  perm = jax.random.permutation(k_perm, images.shape[0])
  height, width = images.shape[1], images.shape[2]
  y1, y2, x1, x2 = cutmix_box(k_box, lam, height, width)
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  inside = (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)
  mixed = jnp.where(inside[None, :, :, None], images[perm], images)
  kept = 1.0 - ((y2 - y1) * (x2 - x1)).astype(jnp.float32) / (height * width)
  return Mixed(mixed, perm, kept)


@dataclasses.dataclass(frozen=True)
class Mixing:
  """The batch mixing of ``data.mixup_alpha`` / ``data.cutmix_alpha`` (both > 0: one of
  the two per batch, with probability 0.5 each)."""

  mixup_alpha: float = 0.0
  cutmix_alpha: float = 0.0

  def __call__(self, key: jax.Array, images: jax.Array) -> Mixed:
    if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
      # Both computed, one kept by a select: a ``lax.cond`` here would hold the batch's
      # cross-device gathers in its branches, and an SPMD program must not branch around
      # collectives (on CPU a cached executable of that form deadlocked 8 devices).
      k_switch, k_mix = jax.random.split(key)
      use_cutmix = jax.random.bernoulli(k_switch, 0.5)
      a = mixup(k_mix, images, self.mixup_alpha)
      b = cutmix(k_mix, images, self.cutmix_alpha)
      return jax.tree.map(lambda u, v: jnp.where(use_cutmix, v, u), a, b)
    if self.cutmix_alpha > 0:
      return cutmix(key, images, self.cutmix_alpha)
    return mixup(key, images, self.mixup_alpha)


def from_config(data_config) -> Mixing | None:
  """The ``Mixing`` of ``config.data``, or None when both alphas are 0 (the step is then
  exactly the unmixed one)."""
  mixup_alpha, cutmix_alpha = float(data_config.mixup_alpha), float(data_config.cutmix_alpha)
  if mixup_alpha <= 0 and cutmix_alpha <= 0:
    return None
  return Mixing(mixup_alpha, cutmix_alpha)
