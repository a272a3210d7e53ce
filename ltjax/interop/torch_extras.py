"""``open_clip``, ``timm`` and ``torchvision`` itself, imported where torchvision's compiled
operators cannot load.

Both import torchvision, whose wheel carries compiled detection operators (``nms``,
``roi_align``, ...) built against one PyTorch. Beside another PyTorch build (a CPU-only
``torch`` from PyTorch's CPU index next to PyPI's CUDA ``torchvision``, as on ltjax's CI
machines) those operators do not load, and torchvision's import then fails registering
``nms`` and ``qnms`` on operators that do not exist. CLIP's and ViT's towers use none of
them, so where (and only where) that exact failure happens, the two operators are declared
without kernels and the import is retried, with a warning: calling them would fail loudly.
"""

from __future__ import annotations

import importlib
import logging
import sys

log = logging.getLogger(__name__)

_MISSING_OPS = "operator torchvision::nms does not exist"
_DECLARED: list = []  # The library object must outlive the import.


def _declare_detection_ops() -> None:
  import torch

  lib = torch.library.Library("torchvision", "FRAGMENT")
  for name in ("nms", "qnms"):
    lib.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
  _DECLARED.append(lib)


def _import(name: str):
  try:
    return importlib.import_module(name)
  except RuntimeError as e:
    if _MISSING_OPS not in str(e) or _DECLARED:
      raise
  except ImportError as e:
    raise ImportError(
      f"{name} is needed here, in ltjax's torch extra: pip install 'ltjax[torch]' (in a "
      "checkout: pip install '.[torch]')."
    ) from e
  log.warning(
    "torchvision's compiled operators do not load with this PyTorch build (%s); %s uses "
    "none of them, so they are declared without kernels.",
    importlib.import_module("torch").__version__,
    name,
  )
  for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
    del sys.modules[mod]
  _declare_detection_ops()
  return importlib.import_module(name)


def import_open_clip():
  """``open_clip``, with torchvision's operators declared if they cannot load."""
  return _import("open_clip")


def import_timm():
  """``timm``, with torchvision's operators declared if they cannot load."""
  return _import("timm")


def import_torchvision():
  """``torchvision`` (with ``torchvision.transforms``), its operators declared if they
  cannot load: the reference of ltjax's image transforms in the tests."""
  _import("torchvision.transforms")
  return importlib.import_module("torchvision")
