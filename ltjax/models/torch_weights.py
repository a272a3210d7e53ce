"""PyTorch weights -> ltjax variables: names, layouts, safe reading, pretrained backbones.

The torchvision / reference ResNet naming (``conv1``, ``bn1``, ``layer{i}.{j}.conv{k}``,
``layer{i}.{j}.downsample.0/1``, OLTR's ``modulatedatt``, ``fc_add``, the classifiers) and
its layouts (conv kernels OIHW, linear weights (out, in), the attention's NCHW flattening)
mapped to ltjax's parameter paths and layouts; ``ltjax.interop.torch_import`` uses them for
the reference checkpoints (``ltjax import-torch``), ``load_pretrained_backbone`` for
ImageNet-pretrained starts (``model.pretrained``). PyTorch is an optional extra, imported
only when a file is read.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

from ltjax.models.resnet import RESNET_CONFIGS, Bottleneck

log = logging.getLogger(__name__)

# ``nn.DataParallel`` wraps every module as ``module``: the references save its state dicts.
DATA_PARALLEL_PREFIX = "module."
# BatchNorm's batch counter (PyTorch >= 0.4.1); not used in inference, no ltjax counterpart.
IGNORED_SUFFIXES = (".num_batches_tracked",)
# ltjax module name -> reference module name (others are the same in both).
_MODULES = {
  "attention": "modulatedatt",
  "W": "conv_mask",
  "spatial": "fc_spatial",
  "downsample_conv": "downsample.0",
  "downsample_bn": "downsample.1",
  "hallucinator": "fc_hallucinator",
  "selector": "fc_selector",
  "cosnorm": "cosnorm_classifier",
}
# (collection, ltjax leaf name) -> reference tensor name.
_LEAVES = {
  ("params", "kernel"): "weight",
  ("params", "scale"): "weight",
  ("params", "bias"): "bias",
  ("params", "weight"): "weight",
  ("params", "scales"): "scales",
  ("batch_stats", "mean"): "running_mean",
  ("batch_stats", "var"): "running_var",
}
# Top-level ltjax subtree -> reference network.
_NETWORK_OF = {"backbone": "feat_model", "neck": "feat_model", "head": "classifier"}
_BLOCK = re.compile(r"^layer(\d+)_(\d+)$")

MAX_LISTED = 20


def import_torch():
  try:
    import torch
  except ImportError as e:
    raise ImportError(
      "reading PyTorch checkpoints needs PyTorch, an optional extra of ltjax: "
      "pip install 'ltjax[torch]' (in a checkout: pip install '.[torch]')."
    ) from e
  return torch


# --- Names and layouts ------------------------------------------------------------------


def torch_name(path: tuple[str, ...], collection: str = "params") -> tuple[str, str]:
  """``(network, key)`` of the reference tensor for an ltjax variable.

  Args:
    path: the variable's path in ``params`` or ``batch_stats``, e.g. ``("backbone",
      "layer1_0", "downsample_conv", "kernel")``.
    collection: ``"params"`` or ``"batch_stats"``.

  Returns:
    e.g. ``("feat_model", "layer1.0.downsample.0.weight")``.

  Raises:
    ValueError: for a variable with no reference counterpart.
  """
  top, *modules, leaf = path
  if top not in _NETWORK_OF or (collection, leaf) not in _LEAVES:
    raise ValueError(f"{collection} {'/'.join(path)} has no counterpart in the reference models.")
  names = []
  for m in modules:
    block = _BLOCK.match(m)
    names.append(f"layer{block[1]}.{block[2]}" if block else _MODULES.get(m, m))
  return _NETWORK_OF[top], ".".join([*names, _LEAVES[(collection, leaf)]])


def _layout(path: tuple[str, ...], ndim: int) -> str:
  """How the reference stores this ltjax variable: conv, dense, spatial or same."""
  if path[-1] != "kernel":
    return "same"
  if ndim == 4:
    return "conv"
  return "spatial" if path[-2] == "spatial" else "dense"


def reference_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
  """The reference tensor's shape for an ltjax variable of ``shape``."""
  layout = _layout(path, len(shape))
  if layout == "conv":  # (kh, kw, I/g, O) <- (O, I/g, kh, kw)
    return (shape[3], shape[2], shape[0], shape[1])
  if layout in ("dense", "spatial"):  # (in, out) <- (out, in)
    return (shape[1], shape[0])
  return tuple(shape)


def to_ltjax(path: tuple[str, ...], value: np.ndarray, ndim: int) -> np.ndarray:
  """Converts a reference tensor (already of ``reference_shape``) to ltjax's layout.

  ``spatial`` (``fc_spatial``, ``(P, C * P)`` for ``P = H * W`` positions): the reference
  input index is ``c * P + p`` (NCHW flattening), ltjax's ``p * C + c`` (NHWC).
  """
  layout = _layout(path, ndim)
  if layout == "conv":
    return np.transpose(value, (2, 3, 1, 0))
  if layout == "dense":
    return value.T
  if layout == "spatial":
    positions = value.shape[0]
    channels = value.shape[1] // positions
    # (P_out, C, P_in) -> (P_in, C, P_out) -> (P_in * C, P_out)
    by_channel = value.reshape(positions, channels, positions)
    return np.transpose(by_channel, (2, 1, 0)).reshape(positions * channels, positions)
  return value


# --- Reading the reference file ---------------------------------------------------------


def _numpy_globals() -> list:
  """The numpy constructors that unpickle plain arrays and scalars (some reference
  checkpoints store e.g. ``embed`` as a numpy array); data only, no code."""
  dtypes = [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64")]
  return [
    np.zeros(0).__reduce__()[0],  # numpy's _reconstruct
    np.float64(0).__reduce__()[0],  # numpy's scalar
    np.ndarray,
    np.dtype,
    *dtypes,
  ]


def load_reference(path: str, allow_pickle: bool = False) -> Any:
  """``torch.load`` of a reference checkpoint on the CPU.

  Args:
    path: the ``.pth`` file.
    allow_pickle: unpickle arbitrary Python objects (``weights_only=False``): only for a
      file you trust, as unpickling can run code. By default only tensors, numpy arrays and
      plain containers load.

  Raises:
    ImportError: PyTorch is not installed.
    FileNotFoundError: no such file.
    ValueError: the file is not a PyTorch checkpoint, or holds other objects.
  """
  torch = import_torch()
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no checkpoint file {path!r}.")
  try:
    with torch.serialization.safe_globals(_numpy_globals()):
      return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
  except Exception as e:  # torch.load raises many types (KeyError, EOFError, ...) on bad files.
    text = str(e)
    unsupported = re.findall(r"Unsupported global: GLOBAL (\S+)", text)
    if unsupported:
      raise ValueError(
        f"{path} holds Python objects other than tensors and arrays ({unsupported[0]}), "
        "which would have to be unpickled: only do that for a file you trust, with "
        "--allow_pickle (import-torch) or --config.model.pretrained_allow_pickle=True "
        "(model.pretrained)."
      ) from e
    # torch's weights-only errors put the cause after "WeightsUnpickler error:".
    cause = text.split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in cause.splitlines() if line.strip()]
    reason = lines[0] if lines else type(e).__name__
    if not _is_torch_file(path):
      raise ValueError(
        f"{path} is not a PyTorch checkpoint (a file torch.save wrote): {reason}"
      ) from e
    if "WeightsUnpickler" in text or "Unsupported" in reason:
      raise ValueError(
        f"{path} holds data that the safe loader refuses ({reason}), which would have to be "
        "unpickled: only do that for a file you trust, with --allow_pickle (import-torch) or "
        "--config.model.pretrained_allow_pickle=True (model.pretrained)."
      ) from e
    raise ValueError(f"cannot read {path} as a PyTorch checkpoint: {reason}") from e


def _is_torch_file(path: str) -> bool:
  """Whether ``path`` looks like torch.save's output: a zip archive (PyTorch >= 1.6) or the
  legacy format, which starts with a pickled magic number."""
  import zipfile

  if zipfile.is_zipfile(path):
    return True
  with open(path, "rb") as f:
    head = f.read(16)
  return head[:2] == b"\x80\x02" and b"\x8a\x0a" in head  # Protocol 2, then a long1 of 10 bytes.


def to_numpy(value: Any, where: str) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()
    value = value.numpy()
  if not isinstance(value, np.ndarray):
    raise ValueError(f"{where} is a {type(value).__name__}, not a tensor.")
  return value


def strip_prefix(key: str) -> str:
  return key[len(DATA_PARALLEL_PREFIX) :] if key.startswith(DATA_PARALLEL_PREFIX) else key


def guess_backbone(feat_model: Mapping[str, np.ndarray]) -> str | None:
  """The ``model.backbone`` name whose layout the reference feature model has, if any."""
  blocks: dict[int, set[int]] = {}
  for key in feat_model:
    m = re.match(r"^layer(\d+)\.(\d+)\.", key)
    if m:
      blocks.setdefault(int(m[1]), set()).add(int(m[2]))
  sizes = tuple(len(blocks[i]) for i in sorted(blocks))
  bottleneck = "layer1.0.conv3.weight" in feat_model
  groups = 1
  conv2 = feat_model.get("layer1.0.conv2.weight")
  if bottleneck and conv2 is not None and conv2.ndim == 4 and conv2.shape[1]:
    groups = conv2.shape[0] // conv2.shape[1]
  for name, (_, fixed) in RESNET_CONFIGS.items():
    if (
      "stage_sizes" in fixed
      and tuple(fixed["stage_sizes"]) == sizes
      and (fixed["block_cls"] is Bottleneck) == bottleneck
      and fixed.get("groups", 1) == groups
    ):
      return name
  return None


def listing(title: str, items: list[str]) -> list[str]:
  if not items:
    return []
  shown = [f"    {x}" for x in items[:MAX_LISTED]]
  more = [f"    ... and {len(items) - MAX_LISTED} more"] if len(items) > MAX_LISTED else []
  return [f"  {title} ({len(items)}):", *shown, *more]


# --- Pretrained backbones (model.pretrained) --------------------------------------------

#: The ImageNet classifier of a torchvision / Caffe ResNet file: no backbone has it.
CLASSIFIER_KEYS = ("fc.weight", "fc.bias")


def _bare_state_dict(raw: Any, path: str) -> dict[str, np.ndarray]:
  """The tensors of a bare state dict (``module.`` prefixes and BN counters dropped)."""
  if isinstance(raw, Mapping) and raw and all(hasattr(v, "shape") for v in raw.values()):
    return {
      strip_prefix(str(k)): to_numpy(v, str(k))
      for k, v in raw.items()
      if not str(k).endswith(IGNORED_SUFFIXES)
    }
  if isinstance(raw, Mapping) and "state_dict_best" in raw:
    what = (
      "a reference final checkpoint (state_dict_best): import it with 'ltjax import-torch' "
      "and start from that run with --config.init_from"
    )
  elif isinstance(raw, Mapping) and "state_dict" in raw:
    what = "a training checkpoint ('state_dict' and more): save its 'state_dict' alone"
  else:
    what = f"a {type(raw).__name__}, not a dict of tensors"
  raise ValueError(
    f"model.pretrained={path} is {what}; it must be a bare PyTorch state dict of a ResNet "
    "(torchvision's ImageNet checkpoints and the reference's caffe_resnet152.pth are)."
  )


def convert_matching(
  expected: Mapping[Any, tuple[str, tuple[str, ...], tuple[int, ...]]],
  tensors: Mapping[Any, np.ndarray],
  name: Any = str,
  where: str = "",
) -> tuple[dict[str, dict], list[str]]:
  """Converts every expected tensor the file has to ltjax's layout.

  Args:
    expected: file key -> (collection, ltjax path, ltjax shape) of the model's variables.
    tensors: file key -> array (keys not expected are the caller's to report).
    name: file key -> its name in messages.
    where: what the ltjax path is in messages (e.g. "model ").

  Returns:
    ``({collection: {ltjax path: float32 array}}, mismatches)``: one line per tensor of
    the wrong shape (in the reference layout), which is left out.
  """
  out: dict[str, dict] = {"params": {}, "batch_stats": {}}
  mismatched = []
  for key, (collection, path, shape) in sorted(expected.items()):
    if key not in tensors:
      continue
    value, want = tensors[key], reference_shape(path, shape)
    if tuple(value.shape) != want:
      mismatched.append(f"{name(key)}: {tuple(value.shape)}, {where}{'/'.join(path)} needs {want}")
      continue
    out[collection][path] = np.asarray(to_ltjax(path, value, len(shape)), np.float32)
  return out, mismatched


def load_pretrained_backbone(
  path: str,
  params: Mapping,
  batch_stats: Mapping,
  allow_pickle: bool = False,
  describe: Any = None,
) -> tuple[dict, dict, list[str]]:
  """A PyTorch ResNet state dict in the torchvision / reference layout, as the backbone.

  Args:
    path: a bare state dict (``conv1.weight``, ``bn1.running_mean``, ``layer1.0.conv1.weight``,
      ...), e.g. torchvision's ``resnet152-*.pth`` or OLTR's ``caffe_resnet152.pth``. Read with
      ``torch.load(weights_only=True)`` unless ``allow_pickle``.
    params, batch_stats: the model's ``backbone`` parameters and BatchNorm statistics (host
      arrays); their values are kept for tensors the file lacks.
    allow_pickle: also unpickle other Python objects (trusted files only).
    describe: tensors -> what the file looks like when it is no ResNet (the hint of the
      error; ``ltjax.models.vit_weights.guess_from_tensors`` names ViT files), or None.

  Returns:
    ``(params, batch_stats, missing)``: the backbone with the file's tensors, and the torch
    names of the model's tensors the file lacks (left at their initialisation). The file's
    ImageNet classifier (``fc.weight``, ``fc.bias``) is skipped.

  Raises:
    ImportError: PyTorch is not installed.
    FileNotFoundError: no such file.
    ValueError: not a bare state dict, or tensors the backbone lacks or of the wrong shape
      (all listed, with the backbone the file looks like).
  """
  tensors = _bare_state_dict(load_reference(path, allow_pickle), path)
  expected = {}  # torch key -> (collection, path in the model, ltjax shape)
  for collection, tree in (("params", params), ("batch_stats", batch_stats)):
    for sub, value in traverse_util.flatten_dict(dict(tree)).items():
      full = ("backbone", *sub)
      expected[torch_name(full, collection)[1]] = (collection, full, tuple(np.shape(value)))
  unknown = sorted(set(tensors) - set(expected) - set(CLASSIFIER_KEYS))
  missing = sorted(set(expected) - set(tensors))
  converted, mismatched = convert_matching(expected, tensors)
  out = {
    collection: traverse_util.flatten_dict(dict(tree))
    | {full[1:]: v for full, v in converted[collection].items()}
    for collection, tree in (("params", params), ("batch_stats", batch_stats))
  }
  if unknown or mismatched:
    guess = guess_backbone(tensors)
    if guess is None and describe is not None:  # E.g. a ViT's state dict, said as such.
      guess = describe(tensors)
    hint = f"\nhint: the file looks like {guess}; check model.backbone." if guess else ""
    problems = listing("tensors the backbone lacks", unknown)
    problems += listing("shape mismatches (reference layouts)", mismatched)
    raise ValueError(
      f"model.pretrained={path} does not fit the backbone:\n" + "\n".join(problems) + hint
    )
  skipped = [k for k in CLASSIFIER_KEYS if k in tensors]
  if skipped:
    log.info("model.pretrained: skipped the file's ImageNet classifier %s", ", ".join(skipped))
  return (
    traverse_util.unflatten_dict(out["params"]),
    traverse_util.unflatten_dict(out["batch_stats"]),
    missing,
  )
