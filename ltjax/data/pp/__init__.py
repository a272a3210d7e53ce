"""What is done to an image: host ops (``image_ops``), device ops (``device_ops``), the
per-record random numbers (``rng``) and the registry of named augmentations
(``augment``). The ops never import the registry.
"""
