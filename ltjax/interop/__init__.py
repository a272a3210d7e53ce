"""Interoperability with PyTorch: ``ltjax.interop.torch_import`` turns the reference PyTorch
checkpoints of facebookresearch/classifier-balancing and zhmiao/OpenLongTailRecognition-OLTR
into an ltjax work directory (``ltjax import-torch``). The tensor names and layouts it and
``model.pretrained`` share are a model concern: ``ltjax.models.torch_weights``.

PyTorch is an optional extra (``pip install 'ltjax[torch]'``), imported only when a file
is read.
"""
