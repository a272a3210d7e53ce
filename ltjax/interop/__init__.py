"""Interoperability with other frameworks.

* ``ltjax.interop.torch_import``: reads the reference PyTorch checkpoints of
  facebookresearch/classifier-balancing and zhmiao/OpenLongTailRecognition-OLTR into an
  ltjax work directory (``ltjax import-torch``). PyTorch is an optional extra
  (``pip install 'ltjax[torch]'``), imported only when a checkpoint is read.
"""

from ltjax.interop.torch_import import import_checkpoint

__all__ = ["import_checkpoint"]
