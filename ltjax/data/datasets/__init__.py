"""The dataset table: each ``config.dataset.name`` is one entry (``DATASETS``) that says how
its train/val/test splits are built and holds its fixed facts (reference list files, class
count, reference training size, the TFDS builders that can stand in for its images). The
loop, ``ltjax prepare``, ``ltjax verify``, the command line and the memory plan read the
table; none of them asks which dataset it is.

``registry``: the entry, the table and what builders return. The entries sit beside their
builders: ``longtail_cut`` (digits, tfds: a balanced dataset cut to a long tail),
``reference_lists`` (imagenet_lt, places_lt, inat2018), ``user`` (lists, folder: your own
data). ``build``: building a run's splits through the table, and verifying them. A new
dataset is one ``register(Dataset(...))`` beside its builder, in a module imported here.
"""

# The table lists its entries in the order these modules register them (``--help`` and the
# error for an unknown name show that order): longtail_cut, reference_lists, user.
from ltjax.data.datasets import longtail_cut, reference_lists, user
from ltjax.data.datasets.build import build_splits, use_decode_cache, verify_splits
from ltjax.data.datasets.longtail_cut import (
  build_cao2019_splits,
  build_digits_splits,
  build_longtail_splits,
  build_tfds_splits,
  load_digits_source,
  tfds_original_order,
)
from ltjax.data.datasets.reference_lists import build_split_list_splits
from ltjax.data.datasets.registry import (
  COMMON_FIELDS,
  DATASETS,
  Dataset,
  DataSpec,
  DataSplits,
  get,
  reference_spec,
  register,
  unread_fields,
  warn_unread,
)
from ltjax.data.datasets.user import build_image_folder, build_user_lists, user_list_files

__all__ = [
  "COMMON_FIELDS",
  "DATASETS",
  "DataSpec",
  "DataSplits",
  "Dataset",
  "build_cao2019_splits",
  "build_digits_splits",
  "build_image_folder",
  "build_longtail_splits",
  "build_split_list_splits",
  "build_splits",
  "build_tfds_splits",
  "build_user_lists",
  "get",
  "load_digits_source",
  "longtail_cut",
  "reference_lists",
  "reference_spec",
  "register",
  "tfds_original_order",
  "unread_fields",
  "warn_unread",
  "use_decode_cache",
  "user",
  "user_list_files",
  "verify_splits",
]
