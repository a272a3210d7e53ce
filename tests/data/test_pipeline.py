"""Long-tail builders, the digits dataset, augmentation and the train stream."""

import dataclasses

import numpy as np
import pytest

from ltjax.data import longtail, pipeline, samplers
from ltjax.data.datasets import build_longtail_splits, load_digits_source
from ltjax.data.pp import augment, image_ops, rng
from ltjax.data.sources import ArraySource, Subset


def test_exponential_counts_profile():
  counts = longtail.exponential_counts(10, 5000, 100)
  assert counts[0] == 5000 and counts[-1] == 50
  assert np.all(np.diff(counts) <= 0)
  np.testing.assert_array_equal(longtail.exponential_counts(3, 100, 4), [100, 50, 25])
  np.testing.assert_array_equal(longtail.exponential_counts(4, 7, 1), [7, 7, 7, 7])


def test_take_per_class_errors_when_class_too_small():
  labels = np.array([0, 0, 1])
  with pytest.raises(ValueError, match="class 1 has 1 images available but 2"):
    longtail.take_per_class(labels, [1, 2], seed=0)


def test_open_set_label_map():
  label_map, k = longtail.open_set_label_map(5, (1, 3))
  np.testing.assert_array_equal(label_map, [0, -1, 1, -1, 2])
  assert k == 3
  with pytest.raises(ValueError, match="outside"):
    longtail.open_set_label_map(5, (7,))


def test_digits_longtail_splits_are_disjoint_balanced_and_longtailed():
  pool = load_digits_source()
  assert len(pool) == 1797 and pool.get_batch(np.arange(2))[0].shape == (2, 8, 8, 1)
  s = build_longtail_splits(
    pool, None, seed=0, imbalance_ratio=20, val_per_class=20, test_per_class=30, open_classes=(9,)
  )
  assert s.num_classes == 9
  counts = s.train_counts
  assert counts[0] == counts.max() and counts[-1] == counts[0] // 20
  assert np.all(np.diff(counts) <= 0)
  np.testing.assert_array_equal(np.bincount(s.val.labels), [20] * 9)
  test_counts = np.bincount(s.test.labels + 1)
  assert test_counts[0] == 30 and np.all(test_counts[1:] == 30)  # 30 open (-1) images.
  sets = [set(x.indices.tolist()) for x in (s.train, s.val, s.test)]
  assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
  again = build_longtail_splits(
    pool, None, seed=0, imbalance_ratio=20, val_per_class=20, test_per_class=30, open_classes=(9,)
  )
  np.testing.assert_array_equal(again.train.indices, s.train.indices)


def test_array_source_rejects_bad_labels():
  with pytest.raises(ValueError, match=r"labels\[1\] = 5 is outside \[0, 3\)"):
    ArraySource(np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 5]), 3)
  src = ArraySource(np.zeros((2, 4, 4), np.uint8), np.array([0, 1]), 2)
  assert src.images.shape == (2, 4, 4, 1)
  sub = Subset(src, [1], label_map=np.array([-1, 0]), num_classes=1)
  assert sub.labels.tolist() == [0]


def test_record_uniforms_depend_only_on_seed_and_position():
  u = rng.record_uniforms(3, np.arange(100), 3)
  assert u.shape == (100, 3) and u.min() >= 0 and u.max() < 1
  np.testing.assert_array_equal(rng.record_uniforms(3, np.arange(50, 60), 3), u[50:60])
  assert not np.allclose(rng.record_uniforms(4, np.arange(100), 3), u)
  assert abs(u.mean() - 0.5) < 0.05


def test_random_crop_flip_matches_a_loop():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (6, 5, 7, 2), dtype=np.uint8)
  u = rng.random((6, 3))
  out = image_ops.random_crop_flip(images, u, pad=2, flip=True)
  for i in range(6):
    padded = np.pad(images[i], ((2, 2), (2, 2), (0, 0)))
    oy, ox = int(u[i, 0] * 5), int(u[i, 1] * 5)
    crop = padded[oy : oy + 5, ox : ox + 7]
    if u[i, 2] < 0.5:
      crop = crop[:, ::-1]
    np.testing.assert_array_equal(out[i], crop)
  np.testing.assert_array_equal(image_ops.random_crop_flip(images, u, pad=0, flip=False), images)
  with pytest.raises(ValueError, match="augment='mixup': unknown augmentation; valid: 'none', "):
    augment.get("mixup")


def _stream(process_index=0, process_count=1, batch=8):
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(3), [10, 5, 2])
  src = ArraySource(rng.integers(0, 255, (17, 6, 6, 1), dtype=np.uint8), labels, 3)
  return pipeline.TrainStream(
    src,
    sampler=samplers.ClassAware(k=2),
    seed=1,
    global_batch=batch,
    augment=augment.CropFlip(pad=1),
    process_index=process_index,
    process_count=process_count,
  )


def test_stream_batches_are_the_same_for_any_process_count():
  one = _stream()
  two = [_stream(i, 2) for i in range(2)]
  for step in (0, 1, 2, 5):  # 17 records: batches straddle epochs.
    whole = one(step)
    parts = [s(step) for s in two]
    for key in ("image", "label"):
      np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]))


def test_train_iterator_state_resumes_at_the_same_batch():
  stream = _stream()
  it = pipeline.train_iterator(stream, 10, num_threads=2, prefetch=3)
  first = [next(it) for _ in range(4)]
  state = it.get_state()
  rest = [next(it)["image"] for _ in range(3)]
  it2 = pipeline.train_iterator(stream, 10)
  it2.set_state(state)
  for a in rest:
    np.testing.assert_array_equal(a, next(it2)["image"])
  np.testing.assert_array_equal(first[0]["label"], stream(0)["label"])


def test_batch_not_divisible_by_processes():
  with pytest.raises(ValueError, match="not divisible by the 3 processes"):
    _stream(0, 3, batch=8)


def test_eval_batches_pad_and_mask():
  src = ArraySource(np.zeros((5, 2, 2, 1), np.uint8), np.arange(5) % 2, 2)
  batches = list(pipeline.eval_batches(src, 4))
  assert [b["mask"].sum() for b in batches] == [4, 1]
  assert all(b["image"].shape == (4, 2, 2, 1) for b in batches)


def test_imagenet_augmentation_through_the_stream():
  rng = np.random.default_rng(0)
  src = ArraySource(rng.integers(0, 255, (6, 40, 30, 3), dtype=np.uint8), np.arange(6) % 2, 2)
  stream = pipeline.TrainStream(
    src, sampler=samplers.get("instance")(), seed=0, global_batch=4, augment=augment.ImageNet(16)
  )
  batch = stream(0)
  assert batch["image"].shape == (4, 16, 16, 3) and batch["image"].dtype == np.uint8
  np.testing.assert_array_equal(stream(0)["image"], batch["image"])
  evals = list(pipeline.eval_batches(src, 4, transform=augment.ResizeCenterCrop(16)))
  assert evals[0]["image"].shape == (4, 16, 16, 3)
  # Built from the config, each with its options from config.data.
  data = {"augment": "imagenet", "crop_size": 16, "jitter": 0.0, "pad": 4, "flip": True}
  assert augment.from_config(data) == augment.ImageNet(crop_size=16, jitter=0.0)
  # crop_flip's option set on another augmentation would do nothing: refused.
  with pytest.raises(ValueError, match=r"data.pad=9 is an option of data.augment='crop_flip'"):
    augment.from_config({**data, "pad": 9})
  with pytest.raises(ValueError, match="valid: 'none', 'crop_flip', 'imagenet'"):
    augment.from_config({**data, "augment": "autoaugment"})


def test_concat_keeps_order_across_sources():
  a = ArraySource(np.full((3, 2, 2, 1), 1, np.uint8), np.array([0, 1, 0]), 2)
  b = ArraySource(np.full((2, 2, 2, 1), 2, np.uint8), np.array([-1, -1]), 2, allow_open=True)
  from ltjax.data.sources import Concat

  c = Concat(a, b)
  assert len(c) == 5 and c.labels.tolist() == [0, 1, 0, -1, -1]
  images, labels = c.get_batch(np.array([4, 0, 3]))
  assert images[:, 0, 0, 0].tolist() == [2, 1, 2] and labels.tolist() == [-1, 0, -1]


@dataclasses.dataclass(frozen=True)
class Invert(augment.Augmentation):
  """A toy augmentation with an option of its own: the negative of every ``every``-th image.

  Attributes:
    every: which images are inverted.
  """

  name = "toy_invert"
  every: int = 1

  def __call__(self, images, positions, seed):
    out = augment.as_batch(images, self.name).copy()
    out[:: self.every] = 255 - out[:: self.every]
    return out


def test_a_new_augmentation_is_one_class_and_its_option(monkeypatch):
  """Registered (here for the test), chosen by ``data.augment``, built with its option from
  ``config.data``: the stream gives its batches and the train step trains on them."""
  from helpers import tiny_config, tiny_splits

  from ltjax import sharding
  from ltjax.train import experiment

  monkeypatch.setitem(augment.AUGMENTATIONS, Invert.name, Invert)
  config = tiny_config(**{"data.augment": "toy_invert"})
  with config.unlocked():
    config.data.every = 2
  exp, state = experiment.setup(config, tiny_splits())
  assert exp.augmentation == Invert(every=2)
  batch = experiment.make_stream(exp)(0)
  plain = experiment.make_stream(exp)
  plain.augment = augment.NoAugmentation()  # The same records, as stored.
  want = plain(0)["image"]
  np.testing.assert_array_equal(batch["image"][::2], 255 - want[::2])
  np.testing.assert_array_equal(batch["image"][1::2], want[1::2])
  data = sharding.batch_sharding(exp.mesh)
  _, metrics = exp.train_step(state, sharding.to_global(batch, data))
  assert np.isfinite(float(metrics["loss"]))
