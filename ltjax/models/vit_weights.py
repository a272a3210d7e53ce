"""Published Vision Transformer weights -> ltjax's ``VisionTransformer`` (``model.pretrained``).

Two families of files, each read as its own reference reader reads it, so that a model
loaded here computes what it computes there (tests/models/test_vit_weights.py compares
against ``open_clip`` and ``timm`` loading the same files):

* CLIP's image tower (``clip_*``, ``openclip_*``; reference: ``open_clip``): OpenAI's
  TorchScript archives (``ViT-B-16.pt``), OpenCLIP's state dicts (``.pt`` / ``.bin``; its
  training checkpoints wrap them as ``{"state_dict": ...}`` with ``module.`` prefixes) and
  its ``open_clip_model.safetensors``. The names are CLIP's (``visual.conv1.weight``,
  ``visual.transformer.resblocks.{i}.attn.in_proj_weight``, ...), the layouts PyTorch's;
  the text tower's tensors (everything outside ``visual.``) are skipped. A bare image-tower
  state dict (the same names without ``visual.``) loads too.
* the AugReg ImageNet-21k ViTs (``vit_*``; reference: timm's ``_load_weights``): the
  ``.npz`` of google-research/vision_transformer (``Transformer/encoderblock_{i}/...``,
  flax layouts, attention kernels per head); the classifier (``head/*``, ``pre_logits/*``)
  is skipped.

Every tensor of the file must go to one tensor of the model and every tensor of the model
must come from the file: otherwise one error names all that do not fit, with the backbone
the file looks like. A file of another grid (a 224-px checkpoint used at 384 px or at 32 px)
gets its position embeddings resampled, the class token's kept, as the reference reader
resamples them: open_clip's ``resize_pos_embed`` (bicubic, antialiased) for CLIP, timm's
``_load_weights`` (bilinear, not antialiased) for AugReg. PyTorch reads the ``.pt`` files and
does that resampling, so every reader here needs it (``pip install 'ltjax[torch]'``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
from flax import traverse_util

from ltjax.models import torch_weights
from ltjax.models.vit import DEFAULT_ACTIVATION, VIT_CONFIGS

log = logging.getLogger(__name__)

#: The prefix of CLIP's image tower in a whole-model state dict; the rest is the text tower.
VISUAL = "visual."
#: The AugReg files' ImageNet-21k classifier (and the original ViTs' representation layer).
AUGREG_SKIPPED = ("head/", "pre_logits/")
#: How each reference reader resamples the position grid: F.interpolate's mode, antialias.
RESAMPLING = {"clip": ("bicubic", True), "augreg": ("bilinear", False)}
#: The activation module names a TorchScript archive records (``original_name``).
_TORCHSCRIPT_ACTIVATIONS = {"QuickGELU": "quick_gelu", "GELU": "gelu"}


# --- What the file is -------------------------------------------------------------------


def file_kind(path: str) -> str:
  """``"npz"``, ``"torchscript"``, ``"torch"`` (a ``torch.save`` file), ``"safetensors"`` or
  ``"unknown"``, from the file's content (a name can lie: OpenCLIP's ``.bin`` files are
  ``torch.save`` archives)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no weight file {path!r}.")
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as z:
      names = z.namelist()
    # TorchScript archives also hold data.pkl: their constants.pkl tells them apart (as
    # torch.load's own check does).
    if any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in names):
      return "torchscript"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
      return "torch"
    if names and all(n.endswith(".npy") for n in names):
      return "npz"
    return "unknown"
  with open(path, "rb") as f:
    head = f.read(9)
  if len(head) == 9 and head[8:9] == b"{":  # a little-endian header length, then JSON
    return "safetensors"
  if torch_weights._is_torch_file(path):
    return "torch"
  return "unknown"


_KIND_TEXT = {
  "npz": "an .npz archive (the AugReg ViTs' format)",
  "torchscript": "a TorchScript archive (OpenAI's CLIP format)",
  "torch": "a PyTorch state dict",
  "safetensors": "a safetensors file",
  "unknown": "not a weight file ltjax reads",
}


# --- Reading ----------------------------------------------------------------------------


def _to_arrays(raw: Mapping, path: str) -> dict[str, np.ndarray]:
  """float32 / integer numpy arrays of a state dict, its ``module.`` prefixes dropped."""
  out = {}
  for key, value in raw.items():
    if not hasattr(value, "shape"):
      raise ValueError(
        f"model.pretrained={path} holds {key!r}, a {type(value).__name__}, where a state "
        "dict holds tensors: give the model's state dict (OpenCLIP training checkpoints keep "
        "it under 'state_dict', which is read)."
      )
    out[torch_weights.strip_prefix(str(key))] = torch_weights.to_numpy(value, str(key))
  return out


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  try:
    from safetensors.torch import load_file
  except ImportError as e:
    raise ImportError(
      f"model.pretrained={path} is a safetensors file, which needs the safetensors package: "
      "pip install safetensors (it comes with ltjax's torch extra)."
    ) from e
  return _to_arrays(load_file(path, device="cpu"), path)


def _read_torchscript(path: str) -> tuple[dict[str, np.ndarray], str | None]:
  """The archive's state dict and the activation its image tower's blocks run (None if it
  names none). ``torch.jit.load`` reads TorchScript, not Python pickles: nothing of the
  archive runs here but the reading of its tensors."""
  torch = torch_weights.import_torch()
  with warnings.catch_warnings():  # "torch.jit.load is deprecated": OpenAI's files are not.
    warnings.simplefilter("ignore", DeprecationWarning)
    module = torch.jit.load(path, map_location="cpu")
  activation = None
  for name, sub in module.named_modules():
    if name.startswith("visual.") and ".mlp." in name:
      activation = _TORCHSCRIPT_ACTIVATIONS.get(getattr(sub, "original_name", ""), activation)
  return _to_arrays(module.state_dict(), path), activation


def _read_torch(path: str, allow_pickle: bool) -> dict[str, np.ndarray]:
  raw = torch_weights.load_reference(path, allow_pickle)
  if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
    raw = raw["state_dict"]  # An OpenCLIP training checkpoint (epoch, optimizer, ...).
  if not isinstance(raw, Mapping) or not raw:
    raise ValueError(
      f"model.pretrained={path} is a {type(raw).__name__}, not a state dict of tensors."
    )
  return _to_arrays(raw, path)


def read_clip_file(
  path: str, allow_pickle: bool = False, backbone: str = "the backbone"
) -> tuple[dict[str, np.ndarray], Any]:
  """``(tensors, activation)`` of a CLIP file: an OpenAI TorchScript archive, a
  ``torch.save`` state dict or a safetensors file; ``activation`` is the one a TorchScript
  archive's image tower runs, else None (a state dict does not say)."""
  kind = file_kind(path)
  if kind == "torchscript":
    return _read_torchscript(path)
  if kind == "safetensors":
    return _read_safetensors(path), None
  if kind == "torch":
    return _read_torch(path, allow_pickle), None
  raise _wrong_kind(path, kind, "clip", backbone)


def read_npz(path: str, backbone: str = "the backbone") -> dict[str, np.ndarray]:
  """The arrays of an ``.npz`` (never unpickled: ``allow_pickle=False``)."""
  kind = file_kind(path)
  if kind != "npz":
    raise _wrong_kind(path, kind, "augreg", backbone)
  with np.load(path, allow_pickle=False) as f:
    return {k: np.asarray(f[k]) for k in f.files}


def _wrong_kind(path: str, kind: str, layout: str, backbone: str) -> ValueError:
  wants = {
    "clip": "a CLIP file (OpenAI's TorchScript .pt, an OpenCLIP state dict or .safetensors)",
    "augreg": "an AugReg .npz",
  }[layout]
  return ValueError(
    f"model.pretrained={path} is {_KIND_TEXT[kind]}; {backbone} takes {wants}."
    + _hint(describe_file(path, kind))
  )


# --- Which backbone a file fits ---------------------------------------------------------


def _vit_names(layout: str, patch: int, width: int, depth: int, embed_dim: int) -> list[str]:
  return [
    name
    for name, cfg in VIT_CONFIGS.items()
    if (cfg["layout"], cfg["patch_size"], cfg["width"], cfg["depth"], cfg.get("embed_dim", 0))
    == (layout, patch, width, depth, embed_dim)
  ]


def _depth(keys, pattern: str) -> int:
  return len({m[1] for k in keys if (m := re.match(pattern, k))})


def guess_from_tensors(tensors: Mapping[str, Any]) -> str | None:
  """What a file's tensors look like, for hints: ``"clip_vit_b16 or openclip_vit_b16"``,
  ``"vit_b16"``, ``"resnet50 (a PyTorch ResNet state dict)"``, a described ViT no backbone
  has, or None."""
  keys = list(tensors)
  if any(k.startswith(VISUAL) for k in keys):
    keys = [k[len(VISUAL) :] for k in keys if k.startswith(VISUAL)]
  shapes = {k: np.shape(tensors.get(k, tensors.get(VISUAL + k))) for k in keys}
  if "conv1.weight" in shapes and "class_embedding" in shapes:
    width, _, patch, _ = (*shapes["conv1.weight"], 0, 0, 0, 0)[:4]
    depth = _depth(keys, r"^transformer\.resblocks\.(\d+)\.")
    embed = shapes.get("proj", (0, 0))[-1]
    what = f"a CLIP image tower (patch {patch}, width {width}, {depth} blocks)"
    names = _vit_names("clip", patch, width, depth, embed)
    return f"{' or '.join(names)}, {what}" if names else f"{what}, which no backbone has"
  if "embedding/kernel" in shapes:
    patch, _, _, width = (*shapes["embedding/kernel"], 0, 0, 0, 0)[:4]
    depth = _depth(keys, r"^Transformer/encoderblock_(\d+)/")
    what = f"an AugReg ViT (patch {patch}, width {width}, {depth} blocks)"
    names = _vit_names("augreg", patch, width, depth, 0)
    return f"{' or '.join(names)}, {what}" if names else f"{what}, which no backbone has"
  if any(k.startswith(("params/", "opt/target/")) for k in keys):
    return "a big_vision / optimizer-state .npz, which ltjax does not read (AugReg's are plain)"
  resnet = torch_weights.guess_backbone(tensors)
  if resnet:
    return f"{resnet} (a PyTorch ResNet state dict)"
  return None


def describe_file(path: str, kind: str | None = None) -> str | None:
  """``guess_from_tensors`` of a file of any kind ltjax reads; None if unreadable."""
  kind = kind or file_kind(path)
  try:
    if kind == "npz":
      with np.load(path, allow_pickle=False) as f:
        return guess_from_tensors({k: f[k] for k in f.files})
    if kind in ("torchscript", "safetensors"):
      return guess_from_tensors(read_clip_file(path)[0])
    if kind == "torch":
      raw = torch_weights.load_reference(path)
      raw = raw.get("state_dict", raw) if isinstance(raw, Mapping) else raw
      return guess_from_tensors(_to_arrays(raw, path)) if isinstance(raw, Mapping) else None
  except Exception:  # Only for a hint: the caller's message stands without it.
    return None
  return None


def _hint(guess: str | None) -> str:
  return f"\nhint: the file looks like {guess}; check model.backbone." if guess else ""


# --- Matching the file to the model ----------------------------------------------------


class _Rule(NamedTuple):
  """How one model tensor is read: from these file tensors of these shapes, combined by
  ``convert``; ``positions``: the position table, resampled when its grid differs."""

  keys: tuple[str, ...]
  shapes: tuple[tuple[int, ...], ...]
  convert: Callable[..., np.ndarray]
  positions: bool = False


def _same(x):
  return x


def _clip_rule(path: tuple[str, ...], shape: tuple[int, ...]) -> _Rule:
  """CLIP's state-dict name and PyTorch layout of an ltjax parameter."""
  *modules, leaf = path
  names = []
  for m in modules:
    block = re.fullmatch(r"resblocks_(\d+)", m)
    if block:
      names += ["transformer", "resblocks", block[1]]
    else:
      names += ["mlp", m] if m in ("c_fc", "c_proj") else [m]
  torch_leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}.get(leaf, leaf)
  if names and names[-1] == "in_proj":  # nn.MultiheadAttention's in_proj_weight / _bias.
    key = ".".join(names[:-1] + [f"in_proj_{torch_leaf}"])
  else:
    key = ".".join([*names, torch_leaf])
  if leaf == "kernel" and len(shape) == 4:  # (kh, kw, in, out) <- (out, in, kh, kw)
    return _Rule((key,), ((shape[3], shape[2], shape[0], shape[1]),), _conv_kernel)
  if leaf == "kernel":  # (in, out) <- (out, in)
    return _Rule((key,), (shape[::-1],), np.transpose)
  return _Rule((key,), (shape,), _same, positions=path == ("positional_embedding",))


def _conv_kernel(w):
  return np.transpose(w, (2, 3, 1, 0))


def _augreg_rule(path: tuple[str, ...], shape: tuple[int, ...], heads: int) -> _Rule:
  """The big_vision name(s) and flax layout of an ltjax parameter (timm's
  ``_load_weights`` reads the same names: MultiHeadDotProductAttention_1, MlpBlock_3)."""
  if path == ("class_embedding",):
    return _Rule(("cls",), ((1, 1, *shape),), lambda w: w.reshape(shape))
  if path == ("positional_embedding",):
    key = "Transformer/posembed_input/pos_embedding"
    return _Rule((key,), ((1, *shape),), lambda w: w[0], positions=True)
  *modules, leaf = path
  if modules == ["conv1"]:
    return _Rule((f"embedding/{leaf}",), (shape,), _same)
  if modules == ["ln_post"]:
    return _Rule((f"Transformer/encoder_norm/{leaf}",), (shape,), _same)
  block = re.fullmatch(r"resblocks_(\d+)", modules[0]) if modules else None
  if block is None:
    raise ValueError(f"params {'/'.join(path)} has no counterpart in an AugReg file.")
  prefix = f"Transformer/encoderblock_{block[1]}/"
  sub = "/".join(modules[1:])
  plain = {
    "ln_1": "LayerNorm_0",
    "ln_2": "LayerNorm_2",
    "c_fc": "MlpBlock_3/Dense_0",
    "c_proj": "MlpBlock_3/Dense_1",
  }
  if sub in plain:
    return _Rule((f"{prefix}{plain[sub]}/{leaf}",), (shape,), _same)
  mha = f"{prefix}MultiHeadDotProductAttention_1/"
  if sub == "attn/in_proj":  # q, k, v per head -> one (width, 3 width) kernel, q|k|v.
    keys = tuple(f"{mha}{n}/{leaf}" for n in ("query", "key", "value"))
    if leaf == "kernel":
      width = shape[0]
      shapes = ((width, heads, width // heads),) * 3
      return _Rule(keys, shapes, lambda *w: np.concatenate([x.reshape(width, -1) for x in w], 1))
    shapes = ((heads, shape[0] // 3 // heads),) * 3
    return _Rule(keys, shapes, lambda *w: np.concatenate([x.reshape(-1) for x in w]))
  if sub == "attn/out_proj":
    if leaf == "kernel":
      shapes = ((heads, shape[0] // heads, shape[1]),)
      return _Rule((f"{mha}out/kernel",), shapes, lambda w: w.reshape(shape))
    return _Rule((f"{mha}out/bias",), (shape,), _same)
  raise ValueError(f"params {'/'.join(path)} has no counterpart in an AugReg file.")


def _grid_side(tokens: int) -> int | None:
  """The side of a square grid of ``tokens - 1`` patches (the class token first)."""
  side = math.isqrt(max(tokens - 1, 0))
  return side if side >= 1 and side * side == tokens - 1 else None


def resample_positions(table: np.ndarray, side: int, layout: str) -> np.ndarray:
  """A ``(1 + n * n, width)`` position table on a ``side x side`` grid, the class token's
  row kept, the grid interpolated as the layout's reference reader does (``RESAMPLING``)."""
  torch = torch_weights.import_torch()
  old = _grid_side(len(table))
  width = table.shape[1]
  mode, antialias = RESAMPLING[layout]
  grid = torch.from_numpy(np.ascontiguousarray(table[1:].reshape(1, old, old, width)))
  grid = torch.nn.functional.interpolate(
    grid.permute(0, 3, 1, 2), size=(side, side), mode=mode, align_corners=False, antialias=antialias
  )
  resampled = grid.permute(0, 2, 3, 1).reshape(side * side, width).numpy()
  return np.concatenate([table[:1], resampled]).astype(np.float32)


def _convert(
  rules: Mapping[tuple[str, ...], _Rule],
  tensors: Mapping[str, np.ndarray],
  layout: str,
  path: str,
  backbone: str,
  shown: Callable[[str], str],
) -> dict:
  """The model's parameters from ``tensors`` by ``rules``; one ValueError naming every file
  tensor no rule reads, every rule's tensor the file lacks and every mis-shaped one."""
  known = {key for rule in rules.values() for key in rule.keys}
  unknown = sorted(shown(k) for k in set(tensors) - known)
  missing = sorted(shown(k) for k in known - set(tensors))
  mismatched, out = [], {}
  for target, rule in sorted(rules.items()):
    if any(k not in tensors for k in rule.keys):
      continue
    values = [np.asarray(tensors[k]) for k in rule.keys]
    wrong = [
      (k, v.shape, s)
      for k, v, s in zip(rule.keys, values, rule.shapes, strict=True)
      if v.shape != s
    ]
    if wrong and rule.positions:
      table = _resampled_positions(values[0], rule, layout, path)
      if table is not None:
        out[target] = table
        continue
    if wrong:
      mismatched += [
        f"{shown(k)}: {got}, {'/'.join(target)} needs {want}" for k, got, want in wrong
      ]
      continue
    out[target] = np.asarray(rule.convert(*values), np.float32)
  if unknown or missing or mismatched:
    problems = torch_weights.listing("tensors the backbone lacks", unknown)
    problems += torch_weights.listing("tensors the file lacks", missing)
    problems += torch_weights.listing("shape mismatches (file layouts)", mismatched)
    raise ValueError(
      f"model.pretrained={path} does not fit backbone {backbone}:\n"
      + "\n".join(problems)
      + _hint(guess_from_tensors(tensors))
    )
  return traverse_util.unflatten_dict(out)


def _resampled_positions(value, rule: _Rule, layout: str, path: str) -> np.ndarray | None:
  """The file's position table on the model's grid, or None when it is not a table of the
  same width on a square grid (then it is a shape mismatch)."""
  want = rule.shapes[0]
  same_rank = value.ndim == len(want) and value.shape[:-2] == want[:-2]
  if not same_rank or value.shape[-1] != want[-1]:
    return None
  old, new = _grid_side(value.shape[-2]), _grid_side(want[-2])
  if old is None or new is None:
    return None
  table = np.asarray(rule.convert(value), np.float32)
  mode, antialias = RESAMPLING[layout]
  log.info(
    "model.pretrained=%s: position embeddings resampled from the file's %dx%d grid to the "
    "model's %dx%d (%s%s, as %s)",
    path,
    old,
    old,
    new,
    new,
    mode,
    ", antialiased" if antialias else "",
    "open_clip's resize_pos_embed" if layout == "clip" else "timm's _load_weights",
  )
  return resample_positions(table, new, layout)


# --- The two readers --------------------------------------------------------------------


def load_clip(
  path: str, params: Mapping, backbone: str, activation: str, allow_pickle: bool = False
) -> dict:
  """A CLIP / OpenCLIP image tower as ``params`` (the backbone's, whose shapes say what to
  read); the text tower is skipped and logged.

  Args:
    path: an OpenAI TorchScript archive, an OpenCLIP state dict (``.pt``, ``.bin``, bare or
      ``{"state_dict": ...}``) or ``.safetensors`` file; a whole CLIP model (``visual.*``)
      or its image tower alone.
    params: the backbone's parameters (host arrays); every one is replaced.
    backbone: its name, for messages.
    activation: the one the backbone runs (``quick_gelu`` or ``gelu``): a TorchScript
      archive whose blocks run the other is refused.
    allow_pickle: unpickle other Python objects in a ``torch.save`` file (trusted files
      only).

  Raises:
    ImportError: PyTorch (or, for a safetensors file, safetensors) is not installed.
    ValueError: another kind of file, or tensors that do not fit (all named, with the
      backbone the file looks like).
  """
  tensors, file_activation = read_clip_file(path, allow_pickle, f"backbone {backbone}")
  if file_activation and file_activation != activation:
    raise ValueError(
      f"model.pretrained={path} is a TorchScript CLIP whose image tower runs "
      f"{file_activation}, but backbone {backbone} runs {activation}, which would give other "
      f"features{_same_tower_with(backbone, file_activation)}."
    )
  whole = any(k.startswith(VISUAL) for k in tensors)
  if whole:
    tower = {k[len(VISUAL) :]: v for k, v in tensors.items() if k.startswith(VISUAL)}
    text = sorted(k for k in tensors if not k.startswith(VISUAL))
  else:
    tower, text = dict(tensors), []
  flat = traverse_util.flatten_dict(dict(params))
  rules = {p: _clip_rule(p, tuple(np.shape(v))) for p, v in flat.items()}
  prefix = VISUAL if whole else ""
  out = _convert(rules, tower, "clip", path, backbone, lambda k: prefix + k)
  if text:
    log.info(
      "model.pretrained=%s: skipped the text tower's %d tensors (%s)",
      path,
      len(text),
      ", ".join(sorted({k.split(".")[0] for k in text})),
    )
  if not file_activation:
    log.info(
      "model.pretrained=%s: backbone %s runs %s; a state dict does not say what its weights "
      "were trained with (OpenAI's CLIP: quick_gelu, the clip_* backbones; OpenCLIP's own "
      "ViT-B-16 / ViT-L-14 weights: gelu, the openclip_* ones)",
      path,
      backbone,
      activation,
    )
  return out


def _same_tower_with(backbone: str, activation: str) -> str:
  """': set --config.model.backbone=NAME' for the CLIP backbone of ``backbone``'s size that
  runs ``activation``; '' if none."""
  cfg = VIT_CONFIGS.get(backbone)
  if cfg is None:
    return ""
  size = ("patch_size", "width", "depth", "embed_dim")
  for name, other in VIT_CONFIGS.items():
    same = all(other.get(k) == cfg.get(k) for k in size) and other["layout"] == "clip"
    if same and (other.get("activation") or DEFAULT_ACTIVATION["clip"]) == activation:
      return f": set --config.model.backbone={name}"
  return ""


def load_augreg(path: str, params: Mapping, backbone: str, heads: int) -> dict:
  """An AugReg ViT ``.npz`` as ``params`` (the backbone's); its classifier is skipped and
  logged.

  Args:
    path: e.g. ``B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz``.
    params: the backbone's parameters (host arrays); every one is replaced.
    backbone: its name, for messages.
    heads: its attention heads (the file stores q, k, v per head).

  Raises:
    ImportError: PyTorch is not installed (it resamples the position embeddings).
    ValueError: another kind of file, or tensors that do not fit (all named, with the
      backbone the file looks like).
  """
  torch_weights.import_torch()
  tensors = read_npz(path, f"backbone {backbone}")
  skipped = sorted(k for k in tensors if k.startswith(AUGREG_SKIPPED))
  kept = {k: v for k, v in tensors.items() if k not in skipped}
  flat = traverse_util.flatten_dict(dict(params))
  rules = {p: _augreg_rule(p, tuple(np.shape(v)), heads) for p, v in flat.items()}
  out = _convert(rules, kept, "augreg", path, backbone, str)
  if skipped:
    log.info(
      "model.pretrained=%s: skipped the file's classifier %s",
      path,
      ", ".join(f"{k} {tuple(tensors[k].shape)}" for k in skipped),
    )
  return out


def load_vit(path: str, params: Mapping, backbone: str, allow_pickle: bool = False) -> dict:
  """The file of ``backbone`` (a ``VIT_CONFIGS`` name) as its parameters: ``load_clip`` or
  ``load_augreg`` by its layout."""
  cfg = VIT_CONFIGS[backbone]
  if cfg["layout"] == "clip":
    activation = cfg.get("activation") or DEFAULT_ACTIVATION["clip"]
    return load_clip(path, params, backbone, activation, allow_pickle)
  return load_augreg(path, params, backbone, cfg["heads"])


def refuse_vit_file(path: str, backbone: str, takes: str) -> None:
  """ValueError when ``path`` is one of the ViT formats (``.npz``, TorchScript, safetensors)
  given to ``backbone``, which takes ``takes``: named with the backbone it fits, rather than
  the PyTorch reader's message about unpickling."""
  kind = file_kind(path)
  if kind in ("npz", "torchscript", "safetensors"):
    raise ValueError(
      f"model.pretrained={path} is {_KIND_TEXT[kind]}; backbone {backbone} takes {takes}."
      + _hint(describe_file(path, kind))
    )
