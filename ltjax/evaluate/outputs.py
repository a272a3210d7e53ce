"""The per-example arrays the evaluators need of a model's logits (``Output``), each defined
once: the eval step computes them on the device; the post-hoc methods' host logits get them
from ``on_host``.

An output has two implementations when it needs them. ``Output.device`` is a jnp function
of (float32 logits, labels), traced into the jitted, sharded eval step. The post-hoc methods
(``ltjax.evaluate.posthoc``) produce logits on the host; there ``Output.host`` computes the
same quantity in numpy, as ltjax always has: in float64 (NLL, top-5 ranks) or in the logits'
own dtype (the max probability, as the post-hoc methods choose their open-set thresholds),
so that the post-hoc rows keep their values to the last bit (demo results byte-identical:
the float32 device function on those logits moves NLL and ECE by ~1e-8). An output without
``host`` runs its device function, jitted, on the host logits.
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
    host: the same in numpy on host logits (the post-hoc methods'), where the device
      function's float32 would change the results (see the module docstring); None: the
      device function runs, jitted, on the host.
  """

  device: Callable
  host: Callable | None = None


def _pred(logits, labels):
  import jax.numpy as jnp

  del labels
  return jnp.argmax(logits, -1).astype(jnp.int32)


def _pred_host(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  del labels
  return np.asarray(logits).argmax(-1).astype(np.int32)


def _max_prob(logits, labels):
  import jax
  import jax.numpy as jnp

  del labels
  return jnp.max(jax.nn.softmax(logits, axis=-1), -1)


def softmax_max(logits: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
  """The max softmax probability of each row, in the dtype of ``logits`` (the post-hoc
  methods' open-set thresholds on val are chosen on these)."""
  del labels
  z = logits - logits.max(-1, keepdims=True)
  e = np.exp(z)
  return (e / e.sum(-1, keepdims=True)).max(-1)


def _label_rank(logits, labels, xp):
  """How many other logits are at least as large as the label's (ties count against the
  label, so equal logits never make a hit), and whether the label is known (>= 0)."""
  known = labels >= 0
  safe = xp.where(known, labels, 0)[:, None]
  true_logit = xp.take_along_axis(logits, safe, -1)
  return xp.sum(logits >= true_logit, -1) - 1, known


def _top_k(k: int) -> Output:
  """Whether the label is among the ``k`` largest logits (False for open-set images)."""

  def device(logits, labels):
    import jax.numpy as jnp

    rank, known = _label_rank(logits, labels, jnp)
    return known & (rank < k)

  def host(logits, labels):
    rank, known = _label_rank(np.asarray(logits, np.float64), np.asarray(labels), np)
    return known & (rank < k)

  return Output(device, host)


def _nll(logits, labels):
  import jax
  import jax.numpy as jnp

  known = labels >= 0
  safe = jnp.where(known, labels, 0)[:, None]
  log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), safe, -1)[:, 0]
  return jnp.where(known, -log_prob, 0.0)


def _nll_host(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
  z = logits - logits.max(-1, keepdims=True)
  log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
  known = labels >= 0
  safe = np.where(known, labels, 0)
  return np.where(known, -np.take_along_axis(log_probs, safe[:, None], -1)[:, 0], 0.0)


#: The outputs that several evaluators share, each defined once.
PRED = Output(_pred, _pred_host)  # The argmax.
MAX_PROB = Output(_max_prob, softmax_max)  # The max softmax probability.
TOP5 = _top_k(metrics.TOP_K)
NLL = Output(_nll, _nll_host)  # -log softmax of the label; 0 for open-set images.


def on_host(logits: Any, labels: Any, outputs: Mapping[str, Output]) -> dict[str, np.ndarray]:
  """``outputs`` of host logits (a post-hoc method's): each output's ``host`` twin, or its
  device function jitted on the float32 logits."""
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
