"""The input pipeline: sampler indices -> read -> augment -> batch -> global jax.Array.

Training reads one global *sample stream*: position p belongs to epoch p // N and
is the (p % N)-th index the sampler draws for that epoch. Step s consumes positions
[s * B, (s + 1) * B) of the stream; process i reads only its contiguous slice of
those positions. A batch is therefore a pure function of (config, seed, step), so
the grain iterator state is just the next step, identical on every process, and a
resumed or multi-process run sees exactly the batches of an uninterrupted
single-process run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grain
import numpy as np

from ltjax.data import samplers
from ltjax.data.pp import augment as augment_lib
from ltjax.data.pp import device_ops
from ltjax.data.sources import Source


def local_batch_size(global_batch: int, process_count: int) -> int:
  if global_batch % process_count:
    raise ValueError(
      f"batch_size {global_batch} is not divisible by the {process_count} processes; "
      "choose a multiple of the process count."
    )
  return global_batch // process_count


class TrainStream:
  """Maps a training step to this process's batch (a dict of numpy arrays).

  Args:
    source: the training source.
    sampler: a ``ltjax.data.samplers.Sampler`` (e.g. ``samplers.from_config(config)``).
    seed: seed of the sampler and of the augmentation.
    global_batch: batch size summed over all processes.
    augment: the training augmentation (``ltjax.data.pp.augment.from_config(config.data)``,
      or a registered one built with its options); default none. An ``on_device`` one's
      batches carry ``ltjax.data.pp.device_ops.KEYS`` instead of ``image``.
    process_index, process_count: this process's slice of every batch.
  """

  def __init__(
    self,
    source: Source,
    *,
    sampler: samplers.Sampler,
    seed: int,
    global_batch: int,
    augment: augment_lib.Augmentation | None = None,
    process_index: int = 0,
    process_count: int = 1,
  ):
    if len(source) == 0:
      raise ValueError("the training set is empty.")
    self.source = source
    self.sampler = sampler
    self.seed = int(seed)
    self.global_batch = int(global_batch)
    self.local_batch = local_batch_size(global_batch, process_count)
    self.process_index = process_index
    self.augment = augment if augment is not None else augment_lib.NoAugmentation()
    self._epochs: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()
    # Validates labels and zero-count classes now rather than in a reader thread.
    self.epoch_indices(0)

  def epoch_indices(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._epochs:
        if len(self._epochs) > 4:  # Batches straddle at most two epochs.
          self._epochs.pop(min(self._epochs))
        self._epochs[epoch] = self.sampler.indices(
          self.source.labels, self.source.num_classes, epoch, self.seed
        )
      return self._epochs[epoch]

  def positions(self, step: int) -> np.ndarray:
    start = step * self.global_batch + self.process_index * self.local_batch
    return np.arange(start, start + self.local_batch, dtype=np.int64)

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    positions = self.positions(int(step))
    n = len(self.source)
    epochs, slots = np.divmod(positions, n)
    indices = np.empty_like(positions)
    for e in np.unique(epochs):
      sel = epochs == e
      indices[sel] = self.epoch_indices(int(e))[slots[sel]]
    images, labels = self.source.get_batch(indices)
    images = self.augment(images, positions, self.seed)
    if isinstance(images, dict):  # On device: the crop buffer + per-record draws.
      return {**images, "label": labels.astype(np.int32)}
    return {"image": images, "label": labels.astype(np.int32)}


def example_shapes(
  augmentation: augment_lib.Augmentation, image_shape: tuple[int, ...]
) -> dict[str, tuple[tuple[int, ...], type]]:
  """Per-example ``(shape, dtype)`` of every key of a training batch (``TrainStream``'s with
  ``augmentation``): ``image`` (the model's uint8 input of ``image_shape``) and ``label``,
  or for an augmentation finished on the device (``imagenet_device``) the host's crop
  buffer and per-record draws of ``ltjax.data.pp.device_ops.prepare_batch`` in place of
  ``image``."""
  shapes = {"image": (tuple(image_shape), np.uint8)}
  if augmentation.on_device:
    shapes = device_ops.example_shapes(augmentation.crop_size, image_shape[-1])
  return {**shapes, "label": ((), np.int32)}


def eval_example_shapes(
  transform: augment_lib.EvalTransform, image_shape: tuple[int, ...]
) -> dict[str, tuple[tuple[int, ...], type]]:
  """Per-example ``(shape, dtype)`` of what the eval and feature steps take of an evaluation
  batch (``eval_batches``' with ``transform``): ``image``, the model's uint8 input of
  ``image_shape``, or for a transform of several views per example (``five_crop``: its
  ``views``) ``(views, *image_shape)``; and ``label``."""
  views = transform.views
  image = tuple(image_shape) if views is None else (views, *image_shape)
  return {"image": (image, np.uint8), "label": ((), np.int32)}


def check_eval_transform(
  transform: augment_lib.EvalTransform,
  augmentation: augment_lib.Augmentation,
  image_shape: tuple[int, ...],
) -> None:
  """Refuses an evaluation transform that cannot evaluate a model of input ``image_shape``
  ((H, W, C): ``ltjax.train.experiment.input_shape``, what ``augmentation`` gives):
  ``five_crop``, whose crops are ``data.crop_size`` square, the side LIFT trains at, for a
  model that sees images of another size (the stored size a ``none`` / ``crop_flip``
  augmentation keeps; ``resize_center_crop`` is not checked, as before).

  Raises:
    ValueError: naming the setting to change.
  """
  if not isinstance(transform, augment_lib.FiveCrop):
    return
  side = transform.crop_size
  h, w = image_shape[:2]
  if (h, w) != (side, side):
    fix = f"set --config.data.crop_size={h}, or " if h == w else ""
    why = ""
    if not augmentation.resizes:
      why = f" (data.augment={augmentation.name} keeps the stored size)"
    raise ValueError(
      f"--config.data.eval_transform=five_crop evaluates {side}x{side} crops "
      f"(data.crop_size), but the model is trained on {h}x{w} images{why}: {fix}train "
      "with --config.data.augment=imagenet (random resized crops of data.crop_size)."
    )


def train_iterator(
  stream: TrainStream, num_steps: int, *, num_threads: int = 2, prefetch: int = 4
) -> grain.DatasetIterator:
  """A grain iterator over steps 0..num_steps-1, prefetched by background threads.

  ``prefetch`` batches are read ahead, at least ``num_threads`` (grain keeps every reader
  thread busy only with a buffer slot each). Its state (``get_state()``/``set_state()``) is
  ``{"next_index": step}``.
  """
  ds = grain.MapDataset.range(num_steps).map(stream)
  options = grain.ReadOptions(
    num_threads=num_threads, prefetch_buffer_size=max(prefetch, num_threads)
  )
  return iter(ds.to_iter_dataset(options))


def eval_batches(
  source: Source,
  global_batch: int,
  *,
  process_index: int = 0,
  process_count: int = 1,
  transform: augment_lib.EvalTransform | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """This process's share of fixed-size evaluation batches, in order, padded at the end.

  Each batch has ``image``, ``label`` and ``mask`` (False on padding rows); the
  padding repeats the last record so shapes never change (one compilation).
  ``transform`` is the evaluation transform
  (``ltjax.data.pp.augment.eval_from_config(config.data)``; default none). The batch size
  counts examples: with ``five_crop`` the images are (B, 5, size, size, C).
  """
  transform = transform if transform is not None else augment_lib.NoTransform()
  local = local_batch_size(global_batch, process_count)
  n = len(source)
  for start in range(0, n, global_batch):
    pos = start + process_index * local + np.arange(local)
    mask = pos < n
    try:
      images, labels = source.get_batch(np.minimum(pos, n - 1))
    except ValueError as e:
      raise ValueError(
        f"{e}\nIt is an image of an evaluation split: data.skip_corrupt replaces training "
        "images only (an evaluation split is never altered, so that every image is scored "
        "once): fix the image or remove its line (`ltjax verify --config=...` lists all)."
      ) from e
    images = transform(images)
    yield {"image": images, "label": labels.astype(np.int32), "mask": mask}
