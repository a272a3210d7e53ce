"""The commands about a dataset before any training: ``stats`` (its class distribution),
``prepare`` (pack it into ArrayRecord shards), ``verify`` (decode every image) and
``example-data`` (write a tiny one). None of them needs JAX."""

from __future__ import annotations

import os

from ltjax.cli.flags import (
  CONFIG,
  DATASET,
  LISTS_DIR,
  NUM_CLASSES,
  OUT,
  RECORDS_PER_SHARD,
  ROOT,
  SPLIT,
  SPLITS,
  require,
)


def cmd_stats(argv) -> None:
  """The class distribution of a split list (--split), or of the training split of the
  config's dataset (--config, any dataset): sizes, imbalance, shot groups."""
  del argv
  from ltjax.data import longtail

  if CONFIG.present:
    from ltjax.data import datasets

    config = CONFIG.value
    splits = datasets.build_splits(config.dataset, config.seed, config.data)
    stats = longtail.split_statistics(
      splits.train.labels,
      splits.num_classes,
      many_threshold=config.eval.many_threshold,
      few_threshold=config.eval.few_threshold,
    )
    name = f"{config.dataset.name} train"
    print(longtail.format_statistics(stats, name))
    print(f"val: {len(splits.val):,} images; test: {len(splits.test):,} images")
    if splits.class_names is not None:
      print(f"classes: {', '.join(splits.class_names[:50])}")
    return
  require(SPLIT, "split")
  from ltjax.data.sources import splitlist

  _, labels = splitlist.parse_split_file(SPLIT.value, NUM_CLASSES.value, allow_open=True)
  stats = longtail.split_statistics(labels, NUM_CLASSES.value)
  print(longtail.format_statistics(stats, os.path.basename(SPLIT.value)))


def cmd_prepare(argv) -> None:
  """Packs the images of split lists into ArrayRecord shards (resumable): a reference
  dataset's (--dataset, --root) or any config's dataset, your own lists or image folder
  included (--config); train from them with --config.dataset.packed_dir=OUT."""
  del argv
  require(OUT, "out")
  from ltjax.data import prepare

  note = lambda line: print(line, flush=True)  # noqa: E731
  if CONFIG.present:
    prepare.prepare_config(
      CONFIG.value.dataset,
      OUT.value,
      records_per_shard=RECORDS_PER_SHARD.value,
      progress=True,
      note=note,
    )
    return
  for flag, name in ((DATASET, "dataset"), (ROOT, "root")):
    require(flag, name)
  splits = SPLITS.value or ",".join(prepare.PREPARE_SPLITS)
  prepare.prepare_dataset(
    DATASET.value,
    ROOT.value,
    OUT.value,
    lists_dir=LISTS_DIR.value,
    splits=tuple(s.strip() for s in splits.split(",") if s.strip()),
    require_open=SPLITS.value is not None,  # Only OLTR needs the open list.
    records_per_shard=RECORDS_PER_SHARD.value,
    progress=True,
    note=note,
  )


def cmd_verify(argv) -> None:
  """Decodes every image of the config's splits before a long run; lists all bad ones."""
  del argv
  require(CONFIG, "config")
  from ltjax.data import datasets

  config = CONFIG.value
  config.data.skip_corrupt = False  # Report every unreadable image, replace none.
  config.data.decode_cache_mb = 0  # Each image is decoded once here: nothing to keep.
  names = tuple(s.strip() for s in (SPLITS.value or "train,val,test").split(",") if s.strip())
  splits = datasets.build_splits(config.dataset, config.seed, config.data)
  problems = datasets.verify_splits(splits, names, threads=config.data.num_threads)
  bad = sum(len(p) for p in problems.values())
  for name in names:
    n = len(getattr(splits, name))
    print(f"{name}: {n:,} images, {len(problems[name])} unreadable")
    for line in problems[name]:
      print(f"  {line}")
  if bad:
    raise ValueError(
      f"{bad} unreadable image(s), listed above: fix or remove them, or set "
      "--config.data.skip_corrupt=True to replace each by another image of its class."
    )


def cmd_example_data(argv) -> None:
  """Writes a tiny long-tailed image dataset (5 digit classes, imbalance 20, val, test and
  an open set; 32x32 JPEGs) to --out, as an image-folder tree and as list files: the
  README's "Your own data" walk-through trains on it."""
  del argv
  require(OUT, "out")
  from ltjax.data import example

  counts = example.write_example_dataset(OUT.value)
  print(
    f"wrote {sum(counts.values())} images to {OUT.value}: "
    + ", ".join(f"{split} {n}" for split, n in counts.items())
    + f" ({', '.join(example.CLASS_NAMES)}; folders train/ val/ test/ open/ and lists "
    "train.txt val.txt test.txt open.txt)"
  )
