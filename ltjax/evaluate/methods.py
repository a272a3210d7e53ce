"""The methods that name results rows: how tables and figures show each one.

A row of ``results.json`` is named by a method: a training recipe's ``config.method``
(``joint``, ``crt``, ...) or a post-hoc method computed from a trained model (each a
registered class of ``ltjax.evaluate.posthoc_methods``, which registers its own entry here).
The report orders its rows, labels them and colours their curves from this table, so that it
never lists method names itself, and it reads no JAX: an entry is plain data.

A method that is not here still gets a row, after the known ones, labelled by its name and
drawn in one of ``OTHER_COLORS``.
"""

from __future__ import annotations

import dataclasses

from ltjax.config import components


@dataclasses.dataclass(frozen=True)
class MethodInfo:
  """How results of one method are shown.

  Attributes:
    name: the results row's key.
    label: its name in tables and legends.
    color: its matplotlib colour in every figure.
    rank: its place among the rows (lower first). The known methods follow the tables of
      Kang et al. 2020 (joint, NCM, cRT, tau-norm, LWS), with the others fitted in; a new
      method with the default rank comes after them, in the order it was registered.
    note: a line the report adds where it names the method's chosen setting.

  A post-hoc method's class carries the same attributes and is its own entry.
  """

  name: str
  label: str
  color: str | None = None
  rank: float = 100.0
  note: str = ""


#: Every known method, by name, in registration order: ``MethodInfo`` entries and the
#: post-hoc methods' classes (``ltjax.evaluate.posthoc_methods``).
METHODS: components.Registry = components.Registry("method", "method")

#: The method whose selection sweep is the top level of ``tau_sweep.json`` (the file's
#: layout since it held only tau-norm's); every other method's sweep is under its name.
TOP_LEVEL_SWEEP = "tau_norm"

#: Colours of methods without one of their own, in turn.
OTHER_COLORS = ("tab:gray", "gold", "darkblue", "lime")


#: Adds ``info`` (a ``MethodInfo``, or a class with its attributes) to ``METHODS``; a second,
#: different entry of one name is refused.
register = METHODS.register


# The training methods: a stage's default ``config.method`` and the loss recipes' names.
for _info in (
  MethodInfo("joint", "Joint", "tab:blue", 0),
  MethodInfo("logit_adjusted", "Logit-adjusted loss", "tab:olive", 1),
  MethodInfo("ldam_drw", "LDAM-DRW", "tab:cyan", 2),
  MethodInfo("lift", "LIFT", "darkviolet", 2.5),
  MethodInfo("crt", "cRT", "tab:green", 4),
  MethodInfo("lws", "LWS", "tab:brown", 7),
  MethodInfo("oltr", "OLTR", "tab:red", 8),
):
  register(_info)


def ordered_methods(methods) -> list[str]:
  """Known methods first, by rank (ties in registration order), then the rest as given."""
  methods = list(methods)
  order = list(METHODS)
  known = sorted(
    (m for m in methods if m in METHODS), key=lambda m: (METHODS[m].rank, order.index(m))
  )
  return known + [m for m in methods if m not in METHODS]


def method_label(method: str) -> str:
  info = METHODS.get(method)
  return info.label if info is not None else method


def method_colors(methods) -> dict[str, str]:
  """One colour per method: its own, or the next of ``OTHER_COLORS`` in turn."""
  others = iter(OTHER_COLORS * (len(methods) // len(OTHER_COLORS) + 1))
  out = {}
  for m in methods:
    info = METHODS.get(m)
    out[m] = info.color if info is not None and info.color else next(others)
  return out
