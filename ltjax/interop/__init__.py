"""Interoperability with PyTorch.

* ``ltjax.interop.torch_weights``: torchvision / reference ResNet names and layouts, safe
  reading of ``.pth`` files, and ImageNet-pretrained backbones (``model.pretrained``).
* ``ltjax.interop.torch_import``: the reference PyTorch checkpoints of
  facebookresearch/classifier-balancing and zhmiao/OpenLongTailRecognition-OLTR as an
  ltjax work directory (``ltjax import-torch``).

PyTorch is an optional extra (``pip install 'ltjax[torch]'``), imported only when a file
is read.
"""
