"""The per-example arrays the evaluators need of a model's logits (``Output``), each
computed by one definition: the eval step runs it on the device; the post-hoc methods' host
logits get it from ``on_host``.

ltjax's outputs are written once against an array module (``array_output``): jnp in the
jitted, sharded eval step (float32 logits), numpy on the host logits the post-hoc methods
(``ltjax.evaluate.posthoc``) produce, where the NLL and the top-5 ranks run in float64 and
the max probability in the logits' own dtype (the post-hoc methods choose their open-set
thresholds on it), as ltjax always has, so the post-hoc rows keep their values to the last
bit (the float32 device run on those logits would move their NLL and ECE by ~1e-8). An
evaluator's own output may be a jnp function only (``Output(device)``): ``on_host`` runs it
jitted on the host logits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ltjax.evaluate import metrics


@dataclasses.dataclass(frozen=True)
class Output:
  """One per-example array of the eval step.

  Attributes:
    device: ``(logits (B, K) float32, labels (B,) int32, -1 for open-set images) -> (B,)``,
      in jnp: traced into the eval step.
    host: the same definition run by numpy on host logits (``array_output``); None: the
      device function runs, jitted, on the host.
  """

  device: Callable
  host: Callable | None = None


def array_output(fn: Callable, host_dtype: Any = None) -> Output:
  """The ``Output`` of one definition ``fn(logits, labels, xp)``, written against the array
  module ``xp``: jnp in the eval step, numpy on host logits cast to ``host_dtype`` (None:
  their own dtype)."""

  def device(logits, labels):
    import jax.numpy as jnp

    return fn(logits, labels, jnp)

  def host(logits, labels):
    logits = np.asarray(logits) if host_dtype is None else np.asarray(logits, host_dtype)
    return fn(logits, None if labels is None else np.asarray(labels), np)

  return Output(device, host)


def _pred(logits, labels, xp):
  """The argmax."""
  del labels
  return xp.argmax(logits, -1).astype(xp.int32)


def _max_prob(logits, labels, xp):
  """The max softmax probability."""
  del labels
  e = xp.exp(logits - logits.max(-1, keepdims=True))
  return (e / e.sum(-1, keepdims=True)).max(-1)


def _top_k(k: int):
  """Whether the label is among the ``k`` largest logits (False for open-set images): fewer
  than ``k`` other logits are at least as large as the label's (ties count against the
  label, so equal logits never make a hit)."""

  def top_k(logits, labels, xp):
    known = labels >= 0
    safe = xp.where(known, labels, 0)[:, None]
    true_logit = xp.take_along_axis(logits, safe, -1)
    return known & (xp.sum(logits >= true_logit, -1) - 1 < k)

  return top_k


def _nll(logits, labels, xp):
  """-log softmax of the label; 0 for open-set images."""
  known = labels >= 0
  safe = xp.where(known, labels, 0)[:, None]
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - xp.log(xp.exp(shifted).sum(-1, keepdims=True))
  return xp.where(known, -xp.take_along_axis(log_probs, safe, -1)[:, 0], 0.0)


#: The outputs that several evaluators share, each defined once.
PRED = array_output(_pred)
MAX_PROB = array_output(_max_prob)
TOP5 = array_output(_top_k(metrics.TOP_K), np.float64)
NLL = array_output(_nll, np.float64)


def softmax_max(logits: np.ndarray) -> np.ndarray:
  """``MAX_PROB`` of host logits, in their dtype (the post-hoc methods' open-set thresholds
  on val are chosen on these)."""
  return MAX_PROB.host(logits, None)


def on_host(logits: Any, labels: Any, outputs: Mapping[str, Output]) -> dict[str, np.ndarray]:
  """``outputs`` of host logits (a post-hoc method's): each output's ``host`` run (its one
  definition in numpy), or its device function jitted on the float32 logits."""
  labels = np.asarray(labels)
  out = {}
  for key, o in outputs.items():
    if o.host is not None:
      out[key] = o.host(logits, labels)
      continue
    import jax

    value = jax.jit(o.device)(np.asarray(logits, np.float32), labels.astype(np.int32))
    out[key] = np.asarray(value)
  return out
