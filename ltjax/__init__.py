"""ltjax: long-tailed image recognition in JAX/Flax (Decoupling and OLTR)."""

__version__ = "0.1.0"
