"""Where records come from: one module per kind of source.

``base``: the ``Source`` protocol, in-memory arrays, subsets and concatenations, and the
record-by-record decoding the file-backed sources share. ``splitlist``: the reference
split lists over an image tree. ``packed``: the same lists packed into ArrayRecord shards
(``ltjax prepare``). ``tfds``: a prepared TFDS split. ``tfds_lists``: the split lists over a
prepared TFDS dataset.
"""

from ltjax.data.sources.base import ArraySource, Concat, Source, Subset, check_labels

__all__ = ["ArraySource", "Concat", "Source", "Subset", "check_labels"]
