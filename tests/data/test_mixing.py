"""mixup and CutMix as the papers define them (Zhang et al. 2018; Yun et al. 2019, rand_bbox)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltjax.data.pp import mixing


def batch(b=6, h=8, w=10):
  return jnp.asarray(np.random.default_rng(0).normal(size=(b, h, w, 3)), jnp.float32)


def test_mixup_is_a_convex_combination_with_a_permutation():
  x = batch()
  out = mixing.mixup(jax.random.key(3), x, alpha=0.4)
  lam = float(out.lam)
  assert 0.0 <= lam <= 1.0
  perm = np.asarray(out.perm)
  assert sorted(perm) == list(range(len(x)))
  np.testing.assert_allclose(out.images, lam * x + (1 - lam) * x[perm], rtol=1e-6, atol=1e-6)


def np_rand_bbox(h, w, lam, cy, cx):
  """Yun et al.'s rand_bbox (their train.py), with the centre given."""
  cut_rat = np.sqrt(1.0 - lam)
  cut_w, cut_h = int(w * cut_rat), int(h * cut_rat)
  bbx1, bby1 = np.clip(cx - cut_w // 2, 0, w), np.clip(cy - cut_h // 2, 0, h)
  bbx2, bby2 = np.clip(cx + cut_w // 2, 0, w), np.clip(cy + cut_h // 2, 0, h)
  return bby1, bby2, bbx1, bbx2


@pytest.mark.parametrize("seed", range(8))
def test_cutmix_pastes_the_papers_box_and_lambda_is_the_kept_area(seed):
  x = batch()
  key = jax.random.key(seed)
  out = mixing.cutmix(key, x, alpha=1.0)
  # The same draws as cutmix's: lam, perm, then the box's centre.
  k_lam, _, k_box = jax.random.split(key, 3)
  lam = float(jax.random.beta(k_lam, 1.0, 1.0))
  k_y, k_x = jax.random.split(k_box)
  cy, cx = int(jax.random.randint(k_y, (), 0, 8)), int(jax.random.randint(k_x, (), 0, 10))
  y1, y2, x1, x2 = np_rand_bbox(8, 10, np.float32(lam), cy, cx)
  perm = np.asarray(out.perm)
  want = np.asarray(x).copy()
  want[:, y1:y2, x1:x2, :] = np.asarray(x)[perm][:, y1:y2, x1:x2, :]
  np.testing.assert_array_equal(out.images, want)
  np.testing.assert_allclose(float(out.lam), 1 - (y2 - y1) * (x2 - x1) / 80, rtol=1e-6)


def test_both_switch_between_the_two_about_half_the_time():
  x = batch()
  both = jax.jit(mixing.Mixing(mixup_alpha=1.0, cutmix_alpha=1.0))  # As in the train step.
  cut = 0
  for seed in range(200):
    out = both(jax.random.key(seed), x)
    diff = np.asarray(out.images != x).any(-1)  # (B, H, W): where pixels changed.
    # CutMix changes a rectangle and leaves the rest exactly; mixup changes every pixel of
    # an image that is not its own partner.
    moved = np.asarray(out.perm) != np.arange(len(x))
    if moved.any() and not diff[moved].all():
      cut += 1
  assert 70 < cut < 130, cut
  # Chosen by a select, not a branch: the batch gathers across devices, and an SPMD
  # program must not put collectives under a data-dependent branch.
  assert "cond[" not in str(jax.make_jaxpr(both)(jax.random.key(0), x))


def test_off_is_none():
  class Data:
    mixup_alpha = 0.0
    cutmix_alpha = 0.0

  assert mixing.from_config(Data()) is None
  Data.cutmix_alpha = 1.0
  assert mixing.from_config(Data()) == mixing.Mixing(0.0, 1.0)
