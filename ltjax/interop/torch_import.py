"""Reference PyTorch checkpoints -> an ltjax work directory (``ltjax import-torch``).

The reference code of Decoupling (facebookresearch/classifier-balancing) and OLTR
(zhmiao/OpenLongTailRecognition-OLTR) saves ``final_model_checkpoint.pth`` as::

  {"epoch", "best_epoch", "best_acc",
   "state_dict_best": {"feat_model": {...}, "classifier": {...}},
   "centroids": (K, D) tensor or None,   # OLTR; classifier-balancing has "embed" instead
   ...}

with the state dicts of ``nn.DataParallel`` modules (keys prefixed ``module.``, accepted
with or without the prefix). ``import_checkpoint`` maps them onto the model of an ltjax
config and writes ``workdir/checkpoints/`` as a finished run of the config's stage (step =
the stage's total steps, the input pipeline at its end), so ``ltjax evaluate [--posthoc]``
reads it and a later stage can start from it (``--config.init_from=workdir``).

What maps to what (torch name -> ltjax parameter path; torch layouts converted):

* ``feat_model``: the torchvision-style ResNet/ResNeXt trunk, ``conv1``, ``bn1``,
  ``layer{i}.{j}.conv{k}/bn{k}``, ``layer{i}.{j}.downsample.0/1`` -> ``backbone/conv1``, ...,
  ``backbone/layer{i}_{j}/downsample_conv|downsample_bn``. Conv kernels OIHW -> HWIO
  (grouped ResNeXt kernels ``(O, I/g, kh, kw)`` -> ``(kh, kw, I/g, O)``); BatchNorm
  ``weight``/``bias``/``running_mean``/``running_var`` -> ``scale``/``bias`` and
  ``batch_stats`` ``mean``/``var`` (both frameworks use epsilon 1e-5; ``num_batches_tracked``
  is dropped). OLTR stage 2 adds ``modulatedatt.{theta,phi,g,conv_mask,fc_spatial}`` ->
  ``neck/attention/{theta,phi,g,W,spatial}`` and ``fc_add`` -> ``neck/fc_add``.
* ``classifier``: ``DotProduct_Classifier`` ``fc`` -> ``head/fc`` (model.head ``linear``);
  the LWS classifier ``fc`` + ``scales`` -> ``head/fc`` + ``head/scales`` (``lws``);
  ``MetaEmbedding_Classifier`` ``fc_hallucinator``/``fc_selector``/
  ``cosnorm_classifier.weight`` -> ``head/hallucinator|selector|cosnorm/weight``
  (``meta_embedding``; the cosine classifier's scale 16 is a constant in both). Linear
  weights ``(out, in)`` -> kernels ``(in, out)``.
* ``centroids`` -> the OLTR stage's ``centroids`` (``TrainState.extra``, stage 2).

The attention's ``fc_spatial`` reads the feature map flattened in NCHW order (index
``c * HW + p`` for position ``p``), ltjax's ``spatial`` dense layer in NHWC order (``p * C +
c``), so its weight columns are permuted on import. The reference hard-codes a 7x7 map
(224-px inputs for ResNets); the config's input size must give the same map.

Every tensor must find its parameter and every parameter its tensor, with the right shape:
otherwise one ``ValueError`` lists all the unknown, missing and mis-shaped keys, with hints
(e.g. which backbone the checkpoint looks like). The optimizer state is fresh (the
reference file has none); ``init_from`` of later stages reads only the variables.

Not importable (no ltjax counterpart): a standalone ``CosNorm_Classifier`` head, and the
reference's ``use_fc`` layer (``oltr.fc_add``) outside OLTR stages 1 (joint) and 2.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import traverse_util

from ltjax.data.datasets import DataSplits
from ltjax.models.torch_weights import (
  IGNORED_SUFFIXES,
  MAX_LISTED,
  convert_matching,
  guess_backbone,
  listing,
  load_reference,
  strip_prefix,
  to_numpy,
  torch_name,
)
from ltjax.train import checkpoint as ckpt_lib
from ltjax.train import experiment
from ltjax.train import workdir as workdir_lib

log = logging.getLogger(__name__)

# The two networks of the reference's ``state_dict_best``.
NETWORKS = ("feat_model", "classifier")
# Scalars of the reference file kept in the imported run's metadata.
INFO_KEYS = ("epoch", "best_epoch", "best_acc")


def parse_reference(raw: Any, path: str = "the checkpoint") -> tuple[dict, np.ndarray | None, dict]:
  """Checks the reference structure and returns its tensors as numpy arrays.

  Returns:
    ``(networks, centroids, info)``: ``{"feat_model": {key: array}, "classifier": {...}}``
    with the ``module.`` prefix and BatchNorm counters removed; the centroids (or None);
    and the file's ``epoch``/``best_epoch``/``best_acc`` scalars.

  Raises:
    ValueError: for any other structure, saying what was found.
  """
  if not isinstance(raw, Mapping):
    raise ValueError(
      f"{path} holds a {type(raw).__name__}; expected the reference's dict with "
      "'state_dict_best' (final_model_checkpoint.pth)."
    )
  if "state_dict_best" not in raw:
    found = sorted(str(k) for k in raw)
    if raw and all(hasattr(v, "shape") for v in raw.values()):
      what = "a bare state dict (tensor names at the top level)"
    elif "state_dict" in raw:
      what = "a 'latest' checkpoint ('state_dict' but no 'state_dict_best')"
    else:
      what = f"a dict with keys {found[:MAX_LISTED]}"
    raise ValueError(
      f"{path} is {what}, not a reference final checkpoint: expected a dict with "
      "'state_dict_best': {'feat_model': ..., 'classifier': ...} (the references' "
      "final_model_checkpoint.pth)."
    )
  best = raw["state_dict_best"]
  if not isinstance(best, Mapping):
    raise ValueError(f"{path}: 'state_dict_best' is a {type(best).__name__}, not a dict.")
  missing = [n for n in NETWORKS if n not in best]
  unknown = sorted(str(n) for n in best if n not in NETWORKS)
  if missing or unknown:
    raise ValueError(
      f"{path}: 'state_dict_best' must hold exactly {list(NETWORKS)}; missing {missing}, "
      f"unknown {unknown}."
    )
  networks = {}
  for name in NETWORKS:
    state_dict = best[name]
    if not isinstance(state_dict, Mapping):
      raise ValueError(
        f"{path}: state_dict_best[{name!r}] is a {type(state_dict).__name__}, not a state dict."
      )
    tensors = {}
    for key, value in state_dict.items():
      if not isinstance(key, str):
        raise ValueError(f"{path}: state_dict_best[{name!r}] has a non-string key {key!r}.")
      if key.endswith(IGNORED_SUFFIXES):
        continue
      tensors[strip_prefix(key)] = to_numpy(value, f"{name}.{key}")
    networks[name] = tensors
  centroids = raw.get("centroids")
  if centroids is not None:
    centroids = to_numpy(centroids, "centroids")
  info = {}
  for key in INFO_KEYS:
    value = raw.get(key)
    if hasattr(value, "item"):
      value = value.item()
    if isinstance(value, int | float) and not isinstance(value, bool):
      info[key] = value
  return networks, centroids, info


# --- Matching tensors to the model ------------------------------------------------------


def _hints(unknown: set, missing: set, networks: dict, config) -> list[str]:
  def any_key(keys, network, prefix):
    return any(n == network and k.startswith(prefix) for n, k in keys)

  hints = []
  if unknown or missing:
    guess = guess_backbone(networks["feat_model"])
    if guess and guess != config.model.backbone:
      hints.append(
        f"the feature model looks like {guess}: set --config.model.backbone={guess} "
        f"(config: {config.model.backbone})."
      )
  if any_key(unknown, "feat_model", "modulatedatt."):
    hints.append(
      "the feature model has OLTR's modulated attention: use an OLTR stage-2 config "
      "(stage='oltr', model.head='meta_embedding', oltr.use_attention=True)."
    )
  if any_key(missing, "feat_model", "modulatedatt."):
    hints.append(
      "the checkpoint has no modulated attention: set --config.oltr.use_attention=False."
    )
  if any_key(unknown, "feat_model", "fc_add."):
    if config.stage in ("joint", "oltr"):
      hints.append("the feature model has the reference's use_fc layer: --config.oltr.fc_add=512.")
    else:
      hints.append(
        "the feature model has the reference's use_fc layer (fc_add): ltjax has it only in "
        f"OLTR stages 1 (joint) and 2 (oltr), not in {config.stage!r}."
      )
  if any_key(missing, "feat_model", "fc_add."):
    hints.append("the checkpoint has no fc_add layer: set --config.oltr.fc_add=0.")
  if any_key(unknown, "classifier", "fc_hallucinator."):
    hints.append(
      "the classifier is OLTR's meta-embedding: use an OLTR stage-2 config (stage='oltr')."
    )
  if ("classifier", "scales") in unknown:
    hints.append("the classifier has LWS scales: use model.head='lws' (stage 'lws').")
  if ("classifier", "scales") in missing:
    hints.append("the classifier has no LWS scales: use model.head='linear'.")
  if ("classifier", "weight") in unknown:
    hints.append(
      "the classifier is a standalone cosine-norm classifier (CosNorm_Classifier): ltjax "
      "has no such head, only the cosine classifier inside the meta-embedding head."
    )
  return hints


def convert(
  networks: Mapping[str, Mapping[str, np.ndarray]],
  centroids: np.ndarray | None,
  params_shapes: Mapping,
  stats_shapes: Mapping,
  centroids_shape: tuple[int, ...] | None,
  config: ml_collections.ConfigDict | None = None,
  source: str = "the checkpoint",
) -> tuple[dict, dict, np.ndarray | None]:
  """The ltjax ``(params, batch_stats, centroids)`` from the reference tensors.

  Args:
    networks: ``parse_reference``'s ``{"feat_model": ..., "classifier": ...}``.
    centroids: the reference centroids or None.
    params_shapes, stats_shapes: nested dicts of the model's variable shapes.
    centroids_shape: ``(K, D)`` if the model has centroids (OLTR stage 2), else None.
    config: the ltjax config, for the error message's hints (optional).
    source: the file name, for messages.

  Raises:
    ValueError: listing every unknown, missing and mis-shaped tensor.
  """
  expected = {}  # (network, key) -> (collection, path, ltjax shape)
  for collection, tree in (("params", params_shapes), ("batch_stats", stats_shapes)):
    for path, shape in traverse_util.flatten_dict(tree).items():
      expected[torch_name(path, collection)] = (collection, path, tuple(shape))
  have = {(n, k): v for n, tensors in networks.items() for k, v in tensors.items()}
  unknown, missing = set(have) - set(expected), set(expected) - set(have)
  out, mismatched = convert_matching(expected, have, name=".".join, where="model ")
  problems = []
  if centroids_shape is not None:
    if centroids is None:
      problems.append(
        f"  the model (OLTR stage 2) needs 'centroids' {centroids_shape}; {source} has none "
        "(is it a stage-1 checkpoint?)"
      )
    elif tuple(centroids.shape) != tuple(centroids_shape):
      mismatched.append(f"centroids: {tuple(centroids.shape)}, model needs {centroids_shape}")
  problems += listing("unknown tensors (no parameter of the model)", _names(unknown))
  problems += listing("missing tensors (model parameters not in the checkpoint)", _names(missing))
  problems += listing("shape mismatches (reference layouts)", mismatched)
  if problems:
    model = "the model"
    hints = []
    if config is not None:
      model = (
        f"the model of the config (stage {config.stage!r}, backbone "
        f"{config.model.backbone!r}, head {config.model.head!r})"
      )
      hints = _hints(unknown, missing, networks, config)
    raise ValueError(
      f"{source} does not match {model}:\n"
      + "\n".join(problems)
      + "".join(f"\nhint: {h}" for h in hints)
    )
  if centroids_shape is None and centroids is not None:
    log.warning("%s has centroids but the model does not use them: ignored.", source)
  params = traverse_util.unflatten_dict(out["params"])
  stats = traverse_util.unflatten_dict(out["batch_stats"])
  centroids = None if centroids_shape is None else np.asarray(centroids, np.float32)
  return params, stats, centroids


def _names(keys: set) -> list[str]:
  return [f"{n}.{k}" for n, k in sorted(keys)]


def _shapes(tree) -> dict:
  return jax.tree.map(lambda x: tuple(x.shape), tree) if tree else {}


# --- The command ------------------------------------------------------------------------


def import_checkpoint(
  ckpt_path: str,
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  splits: DataSplits | None = None,
  allow_pickle: bool = False,
) -> dict:
  """Imports a reference checkpoint as a finished ltjax run of ``config`` in ``workdir``.

  The model, the data (for the number of classes, the input size and the run length) and
  the train state come from ``experiment.setup``, as for ``ltjax train``, except that
  ``config.init_from`` is not read: every variable comes from the checkpoint.

  Args:
    ckpt_path: the reference ``final_model_checkpoint.pth``.
    config: the ltjax config whose model the checkpoint holds (backbone, head, OLTR neck).
    workdir: the new run's work directory; must not hold checkpoints yet.
    splits: the data splits (default: built from ``config.dataset``).
    allow_pickle: unpickle Python objects other than tensors and arrays (trusted files only).

  Returns:
    A summary: ``workdir``, ``step``, ``stage``, ``backbone``, ``head``, ``tensors`` (number
    imported), ``parameters`` (number of scalars), ``centroids`` (bool) and ``reference``
    (the file's epoch / best_epoch / best_acc).

  Raises:
    ImportError: PyTorch is missing.
    FileNotFoundError: no such checkpoint file.
    ValueError: an unreadable or non-reference file, a checkpoint that does not match the
      config (listing the unknown, missing and mis-shaped tensors), or a work directory that
      already holds checkpoints.
  """
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
    raise ValueError(f"{ckpt_dir} already holds checkpoints; import into a new work directory.")
  networks, centroids, info = parse_reference(load_reference(ckpt_path, allow_pickle), ckpt_path)
  exp, state = experiment.setup(config, splits, check_start=False)
  extra = state.extra or {}
  params, stats, cents = convert(
    networks,
    centroids,
    _shapes(state.params),
    _shapes(state.batch_stats),
    tuple(extra["centroids"].shape) if "centroids" in extra else None,
    config,
    ckpt_path,
  )
  step = exp.total_steps
  # Saved from host memory: restoring into the sharded target works the same, and orbax
  # then writes each array once instead of slicing every replicated array per device.
  state = jax.device_get(state).replace(
    step=np.asarray(step, np.int32),
    params=params,
    batch_stats=stats,
    extra=None if cents is None else {**extra, "centroids": cents},
  )
  meta = experiment.run_metadata(exp)
  meta["imported_from"] = {"path": os.path.abspath(ckpt_path), **info}
  ckpt = ckpt_lib.Checkpointer(ckpt_dir, config.keep_checkpoints)
  try:
    # A finished run: the input pipeline's state is at the last step
    # (pipeline.train_iterator's state is {"next_index": step}).
    ckpt.save(step, state, {"next_index": step}, meta)
  finally:
    ckpt.close()
  workdir_lib.write_config(workdir, config)  # `ltjax evaluate` reads it; a resume checks it.
  leaves = jax.tree.leaves((params, stats, cents))
  summary = {
    "workdir": workdir,
    "step": step,
    "stage": config.stage,
    "backbone": config.model.backbone,
    "head": config.model.head,
    "tensors": len(leaves),
    "parameters": int(sum(x.size for x in leaves)),
    "centroids": cents is not None,
    "reference": info,
  }
  log.info("imported %s into %s: %s", ckpt_path, workdir, summary)
  return summary
