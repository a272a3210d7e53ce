"""What is done with a run's splits once the table has said how to build them:
``build_splits`` (the entry's builder, the record-identity check, the decode cache) and
``verify_splits`` (``ltjax verify``: every record decoded once)."""

from __future__ import annotations

import ml_collections
import numpy as np

from ltjax.data import identity
from ltjax.data.datasets.registry import DataSplits, get
from ltjax.data.sources.base import Concat, DecodeCache, Subset
from ltjax.data.sources.splitlist import UNREADABLE_FIX
from ltjax.stop import STOP


def build_splits(cfg: ml_collections.ConfigDict, seed: int, data_cfg=None) -> DataSplits:
  """Builds the splits described by ``config.dataset`` (``config.data`` for decoding),
  checked to share no record and to repeat none (``ltjax.data.identity.check_splits``)."""
  splits = get(cfg.name).build(cfg, seed, data_cfg)
  identity.check_splits(splits, allow_train_duplicates=bool(cfg.allow_train_duplicates))
  budget = int(getattr(data_cfg, "decode_cache_mb", 0) or 0) if data_cfg else 0
  if budget:
    use_decode_cache(splits, DecodeCache(budget * 2**20))
  return splits


def _leaves(source):
  """The sources that decode records under ``source`` (through subsets and concatenations)."""
  if isinstance(source, Subset):
    yield from _leaves(source.source)
  elif isinstance(source, Concat):
    for part in source.sources:
      yield from _leaves(part)
  else:
    yield source


def use_decode_cache(splits: DataSplits, cache: DecodeCache) -> None:
  """The train and val splits (read every epoch) keep their decoded images in ``cache``'s
  budget (``data.decode_cache_mb``); test, read once, does not."""
  for split in (splits.train, splits.val):
    for leaf in _leaves(split):
      if hasattr(leaf, "use_cache") and leaf._decoded is None:
        leaf.use_cache(cache)


def verify_splits(
  splits: DataSplits, names=("train", "val", "test"), threads: int = 8, progress: bool = True
) -> dict[str, list[str]]:
  """Decodes every record of the named splits (``ltjax verify``).

  Args:
    splits: the splits, built without ``data.skip_corrupt`` (which would hide bad images).
    names: which of train, val and test.
    threads: decoding threads.
    progress: a tqdm bar per split.

  Returns:
    ``{split: [message, ...]}``: every unreadable record (missing or corrupt file, naming it
    and its list line), in order; empty lists when all decode.

  Raises:
    ValueError: an unknown split name.
  """
  import concurrent.futures

  import tqdm

  unknown = [n for n in names if n not in ("train", "val", "test")]
  if unknown:
    raise ValueError(f"unknown split(s) {unknown}; valid: train, val, test.")
  out = {}
  for name in names:
    source = getattr(splits, name)

    def check(i, source=source):
      try:
        source.get_batch(np.array([i]))
      except ValueError as e:  # The per-image advice would point back to this command.
        return str(e).removesuffix(f" {UNREADABLE_FIX}")
      return None

    results = []
    with concurrent.futures.ThreadPoolExecutor(max(int(threads), 1)) as pool:
      futures = [pool.submit(check, i) for i in range(len(source))]
      try:
        for future in tqdm.tqdm(
          futures, desc=f"verify {name}", unit="img", disable=not progress, mininterval=1
        ):
          STOP.check()
          results.append(future.result())
      except BaseException:
        pool.shutdown(cancel_futures=True)
        raise
    out[name] = [r for r in results if r]
  return out
