"""CLIP text features of class names, computed by the checkpoint's own text tower
(``ltjax clip-text``): PyTorch and ``open_clip`` (the ``torch`` extra), once, at import
time; training and evaluation then read the ``.npz`` (``ltjax.models.text_features``).

The text tower and its BPE tokenizer are ``open_clip``'s, which build OpenAI's and
OpenCLIP's (non-timm) CLIP models alike from their state dicts, so the features are those
the published code computes. Reads OpenAI's TorchScript archives (``ViT-B-16.pt``) and
OpenCLIP's state dicts (``.bin`` / ``.pt``, ``.safetensors``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np

from ltjax.interop import torch_extras
from ltjax.models import text_features, torch_weights

log = logging.getLogger(__name__)


def read_state_dict(path: str, allow_pickle: bool = False) -> dict:
  """The tensors of a CLIP checkpoint: an OpenAI TorchScript archive, or an OpenCLIP state
  dict (possibly under ``state_dict`` with ``module.`` prefixes, as training checkpoints
  keep it; ``.safetensors`` too), as float32 torch tensors."""
  torch = torch_weights.import_torch()
  open_clip = torch_extras.import_open_clip()
  try:
    with warnings.catch_warnings():  # torch.jit.load's deprecation: OpenAI's files need it.
      warnings.simplefilter("ignore", DeprecationWarning)
      sd = torch.jit.load(path, map_location="cpu").state_dict()
  except RuntimeError:  # Not a TorchScript archive: a state dict.
    sd = open_clip.factory.load_state_dict(path, weights_only=not allow_pickle)
  for key in ("input_resolution", "context_length", "vocab_size"):  # OpenAI's archive.
    sd.pop(key, None)
  return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def _text_tower(open_clip, sd: dict, quick_gelu: bool, path: str):
  """CLIP's text tower with the file's weights (float32), built as OpenAI's builder infers
  it from the tensors (64-wide heads): the image tower is not built, so any image width
  works."""
  width = sd["ln_final.weight"].shape[0]
  layers = {k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")}
  cfg = open_clip.model.CLIPTextCfg(
    context_length=sd["positional_embedding"].shape[0],
    vocab_size=sd["token_embedding.weight"].shape[0],
    width=width,
    heads=width // 64,
    layers=len(layers),
  )
  tower = open_clip.model._build_text_tower(sd["text_projection"].shape[1], cfg, quick_gelu)
  # attn_mask: the causal mask, built by the tower (a traced archive also stores it).
  skip = ("logit_scale", "attn_mask")
  text = {k: v for k, v in sd.items() if not k.startswith("visual.") and k not in skip}
  result = tower.load_state_dict(text, strict=False)
  missing = [k for k in result.missing_keys if k != "attn_mask"]
  if missing or result.unexpected_keys:
    raise ValueError(
      f"{path}: the text tower does not fit CLIP's layout (missing: "
      f"{', '.join(missing) or 'none'}; unexpected: "
      f"{', '.join(result.unexpected_keys) or 'none'})."
    )
  return tower.eval()


def compute(
  path: str,
  class_names: Sequence[str],
  quick_gelu: bool,
  prompt: str = text_features.DEFAULT_PROMPT,
  allow_pickle: bool = False,
  batch_size: int = 256,
) -> text_features.TextFeatures:
  """The text features of ``class_names`` by the CLIP model in ``path``.

  Args:
    path: the CLIP checkpoint (both towers: the image tower's projection and logit scale
      are kept with the features).
    class_names: in the dataset's class order.
    quick_gelu: the towers' activation: True for OpenAI's weights, False for OpenCLIP's
      own (LAION) ones. It changes the text features, so it must match the weights.
    prompt: the template (``{}`` the class name, underscores read as spaces).
    allow_pickle: unpickle other Python objects of a state dict (trusted files only).
    batch_size: prompts per text-tower call.

  Raises:
    ValueError: not a CLIP ViT checkpoint with a text tower (naming what it lacks).
  """
  torch = torch_weights.import_torch()
  open_clip = torch_extras.import_open_clip()
  sd = read_state_dict(path, allow_pickle)
  needed = ("visual.proj", "text_projection", "token_embedding.weight", "logit_scale")
  lacking = [k for k in needed if k not in sd]
  if lacking:
    raise ValueError(
      f"{path} is not a CLIP ViT checkpoint with its text tower (no {', '.join(lacking)}); "
      "give the whole CLIP model's file (OpenAI's ViT-B-16.pt, OpenCLIP's "
      "open_clip_model.safetensors)."
    )
  tower = _text_tower(open_clip, sd, quick_gelu, path)
  texts = text_features.prompts(class_names, prompt)
  tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=tower.context_length)
  out = []
  with torch.no_grad():
    for i in range(0, len(texts), batch_size):
      out.append(tower(tokenizer(texts[i : i + batch_size])).double().numpy())
  features = text_features.normalize(np.concatenate(out)).astype(np.float32)
  log.info("text features of %d classes from %s (prompt %r)", len(texts), path, prompt)
  return text_features.TextFeatures(
    class_names=tuple(class_names),
    features=features,
    logit_scale=float(sd["logit_scale"].exp()),
    prompt=prompt,
    projection=sd["visual.proj"].numpy().astype(np.float32),
    source=str(path),
  )
