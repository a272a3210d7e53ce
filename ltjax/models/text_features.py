"""CLIP text features of a dataset's class names: what a text-initialised head starts from
and what zero-shot CLIP classifies with.

LIFT (Shi et al., ICML 2024; shijxcs/LIFT ``trainer.py`` ``init_head_text_feat``) starts its
classifier from the CLIP text embeddings of ``"a photo of a {}."`` for each class name
(underscores read as spaces), each normalised to unit length; zero-shot CLIP scores an image
by ``logit_scale * cos(image embedding, text embedding)`` with CLIP's learnt
``logit_scale`` (its ``exp``, 100 in the published models).

The features are computed once, by the model's own text tower (``ltjax clip-text``:
``ltjax.interop.clip_text``, PyTorch and ``open_clip``), and kept in one ``.npz`` file with
the class names they belong to, so that a head is never initialised, or an image scored, with
the text of other classes. This module reads and applies that file: numpy only.

The features a head receives are either CLIP's joint image-text space (the image tower's
``proj`` applied: the text features themselves fit) or the width before it, where LIFT's
heads sit; LIFT then maps the text features back through the projection
(``normalize(t @ proj.T)``), which the file carries for that purpose.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from ltjax import files

#: A run's own copy of its ``model.text_features`` (in its work directory): what its head
#: started from and what its zero-shot row scores with, whatever happens to the file given.
RUN_COPY = "text_features.npz"

#: LIFT's default prompt (``cfg.prompt == "default"``) and CLIP's ImageNet one.
DEFAULT_PROMPT = "a photo of a {}."


@dataclasses.dataclass(frozen=True)
class TextFeatures:
  """One file's content.

  Attributes:
    class_names: the K class names, in the dataset's class order.
    features: (K, E) float32, unit rows: the text embedding of each class's prompt.
    logit_scale: CLIP's ``logit_scale.exp()``: the zero-shot logits' scale.
    prompt: the template, ``{}`` the class name.
    projection: (W, E) float32, the image tower's ``proj``, or None (AugReg towers have
      none; the features then only fit E-wide image features).
    source: the checkpoint they were computed from (for the record).
  """

  class_names: tuple[str, ...]
  features: np.ndarray
  logit_scale: float
  prompt: str = DEFAULT_PROMPT
  projection: np.ndarray | None = None
  source: str = ""

  def __post_init__(self):
    k, e = np.shape(self.features)
    if k != len(self.class_names):
      raise ValueError(f"{k} text features for {len(self.class_names)} class names.")
    if self.projection is not None and np.shape(self.projection)[1] != e:
      raise ValueError(
        f"projection {np.shape(self.projection)} does not end in the text width {e}."
      )


def prompts(class_names: Sequence[str], prompt: str = DEFAULT_PROMPT) -> list[str]:
  """The text of each class, as LIFT writes it (``c.replace("_", " ")``)."""
  return [prompt.format(name.replace("_", " ")) for name in class_names]


def normalize(x: np.ndarray) -> np.ndarray:
  """Unit rows (PyTorch's ``F.normalize``: eps 1e-12)."""
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def save(path: str, tf: TextFeatures) -> None:
  """Writes ``tf`` to ``path`` (``.npz``, atomically)."""
  arrays = {
    "class_names": np.asarray(tf.class_names, dtype=np.str_),
    "features": np.asarray(tf.features, np.float32),
    "logit_scale": np.float32(tf.logit_scale),
    "prompt": np.asarray(tf.prompt, dtype=np.str_),
    "source": np.asarray(tf.source, dtype=np.str_),
  }
  if tf.projection is not None:
    arrays["projection"] = np.asarray(tf.projection, np.float32)
  with files.atomic_write(path, "wb") as f:
    np.savez(f, **arrays)


def load(path: str) -> TextFeatures:
  """Reads a file ``save`` wrote; ValueError naming the file and how to make one."""
  how = "make one with 'ltjax clip-text CHECKPOINT --config=... --out=FILE'"
  if not os.path.isfile(path):
    raise ValueError(f"text features {path} do not exist; {how}.")
  try:
    with np.load(path, allow_pickle=False) as z:
      return TextFeatures(
        class_names=tuple(str(n) for n in z["class_names"]),
        features=np.asarray(z["features"], np.float32),
        logit_scale=float(z["logit_scale"]),
        prompt=str(z["prompt"]),
        projection=np.asarray(z["projection"], np.float32) if "projection" in z else None,
        source=str(z["source"]) if "source" in z else "",
      )
  except (OSError, KeyError, ValueError) as e:
    raise ValueError(f"text features {path} cannot be read ({e}); {how}.") from e


def of_run(workdir: str, config) -> str:
  """The text features of a run: its own copy, else ``model.text_features``; "" for none."""
  own = os.path.join(workdir, RUN_COPY)
  return own if os.path.isfile(own) else (config.model.get("text_features") or "")


def check_classes(tf: TextFeatures, class_names: Sequence[str] | None, where: str) -> None:
  """Refuses text features of other classes than the dataset's, or in another order.

  Raises:
    ValueError: the dataset has no class names, another count, or another name at some
      index (the first three differences named).
  """
  if class_names is None:
    raise ValueError(
      f"{where}: the dataset has no class names to check the text features against; give "
      "them with --config.dataset.class_names=FILE (one name a line, in class order)."
    )
  names = tuple(class_names)
  if names == tf.class_names:
    return
  if len(names) != len(tf.class_names):
    raise ValueError(
      f"{where}: the text features are of {len(tf.class_names)} classes, the dataset has "
      f"{len(names)}: compute them again for this dataset ('ltjax clip-text')."
    )
  diffs = [
    f"class {i}: {a!r} in the file, {b!r} in the dataset"
    for i, (a, b) in enumerate(zip(tf.class_names, names, strict=True))
    if a != b
  ]
  raise ValueError(
    f"{where}: the text features are of other class names ({len(diffs)} differ; "
    f"{'; '.join(diffs[:3])}): compute them again for this dataset ('ltjax clip-text')."
  )


def head_kernel(tf: TextFeatures, feature_dim: int) -> np.ndarray:
  """The (D, K) kernel of a head on ``feature_dim``-wide features, from the text features:
  the text features themselves on CLIP's joint space (D = E), LIFT's
  ``normalize(normalize(t) @ proj.T)`` on the features before the projection (D = W).

  Raises:
    ValueError: features of neither width.
  """
  t = normalize(tf.features)
  if feature_dim == t.shape[1]:
    return t.T.astype(np.float32)
  if tf.projection is not None and feature_dim == tf.projection.shape[0]:
    return normalize(t @ tf.projection.T).T.astype(np.float32)
  widths = [t.shape[1]] + ([tf.projection.shape[0]] if tf.projection is not None else [])
  raise ValueError(
    f"the head sees {feature_dim}-wide features, but the text features fit "
    f"{' or '.join(map(str, widths))}-wide ones: they were computed from another CLIP model "
    "than the backbone's."
  )


def zero_shot_logits(tf: TextFeatures, features: np.ndarray) -> np.ndarray:
  """CLIP's zero-shot logits ``logit_scale * cos(image embedding, text features)`` of image
  ``features`` (N, D): D = E (the joint space), or D = W (projected here first).

  Raises:
    ValueError: features of neither width.
  """
  z = np.asarray(features, np.float64)
  t = normalize(tf.features)
  if z.shape[1] != t.shape[1]:
    if tf.projection is None or z.shape[1] != tf.projection.shape[0]:
      head_kernel(tf, z.shape[1])  # Raises, naming the widths.
    z = z @ np.asarray(tf.projection, np.float64)
  return (tf.logit_scale * normalize(z) @ t.T).astype(np.float32)
