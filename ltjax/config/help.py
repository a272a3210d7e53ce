"""Which fields a config's components read, and the ``--help`` text that lists them.

The base config holds the options of every component (each loss, sampler, stage,
augmentation, schedule); a config uses a few of them. ``ltjax train --config=FILE --help``
shows, block by block, only the fields the config's chosen components read, each with its
meaning and its default where the config changes it.

The registered dataclasses (losses, samplers, optimizers, schedules, evaluators,
augmentations, evaluation transforms, heads, backbones, fine-tuning methods) say themselves
which options they read and what each means: their fields and their docstring's
``Attributes:`` section, read from their source (``ltjax.config.declared``), since they
import JAX and loading a config or printing its help never does. So do the block OLTR owns
(``OLTROptions``) and the stages, whose class attributes say which of the fields some stages
read and others do not they read (``declared.stages``). The rest, the run's skeleton, has
its meaning in ``ltjax.config.docs``. ``tests/test_config_help.py`` checks every reading
against the imported components. A component ltjax's source does not declare (an
extension's) shows all of its block's options, never hides one.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping

from ltjax.config import declared
from ltjax.config.docs import FIELD_DOCS
from ltjax.config.schema import base_config

#: The order blocks are listed in; "" is the run's own fields.
BLOCKS = ("", "dataset", "data", "sampler", "loss", "model", "optim", "oltr", "eval")


def _block(field: str) -> str:
  return field.split(".")[0] if "." in field else ""


def _flat(tree: Mapping, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _in_order(config, prefix: str = "") -> list[str]:
  """The fields of a ConfigDict in the order the schema sets them (its ``items()`` and
  ``to_dict()`` sort them; the ``_fields`` it keeps do not)."""
  out = []
  for key, value in vars(config)["_fields"].items():
    if hasattr(value, "to_dict"):
      out += _in_order(value, f"{prefix}{key}.")
    else:
      out.append(f"{prefix}{key}")
  return out


def _option_of(table: Mapping[str, tuple[str, ...]], name, option: str) -> bool:
  """Whether the component ``name`` of ``table`` reads ``option``; every option is read
  when the table does not know ``name``."""
  return name not in table or option in table[name]


def _chosen_reads(selector: str, chosen, option: str) -> bool:
  """Whether a component ``selector`` chooses (a name, or ``eval.evaluators``' names) reads
  ``option``; every option is read by a name ltjax's source does not declare."""
  names = [chosen] if isinstance(chosen, str) else list(chosen or ())
  table = declared.options(selector)
  return any(_option_of(table, declared.resolve(selector, n) or n, option) for n in names)


def _is_read(field: str, c: Mapping) -> bool:
  """Whether the components that ``c`` (a flat config) chooses read ``field``."""
  option = field.rpartition(".")[2]
  stage = declared.stages().get(c.get("stage"))  # None: a stage ltjax does not declare.
  if stage is not None and field in stage.when_set:
    return bool(c.get(field))
  if stage is not None and field in declared.stage_specific() and field not in stage.reads:
    return False
  registries = declared.owners(field)  # The registered components that declare it.
  if "model.peft" in registries:  # A fine-tuning option: the backbone's and its method's.
    method = c.get("model.peft")
    return _chosen_reads("model.backbone", c.get("model.backbone"), "peft") and _chosen_reads(
      "model.peft", method, option
    )
  if registries:
    return any(_chosen_reads(s, c.get(s), option) for s in registries)
  return True


def read_fields(config, unread: Iterable[str] = ()) -> list[str]:
  """The fields (``"optim.lr"``, ``"seed"``) of ``config`` that its components read, in
  ``--help`` order: block by block, each in the base config's order, then fields the base
  config does not have.

  Args:
    config: a ConfigDict, or its ``to_dict()``.
    unread: fields the config's dataset does not read (``"dataset.root"``, ...): the data
      layer knows them, which the config layer may not import; the command line passes them.
  """
  c = _flat(config.to_dict() if hasattr(config, "to_dict") else config)
  base = _in_order(base_config())
  known = [f for f in base if f in c and _is_read(f, c)]
  extra = sorted(f for f in c if f not in base)
  skip = set(unread)
  order = {b: i for i, b in enumerate(BLOCKS)}
  fields = [f for f in known + extra if f not in skip]
  return sorted(fields, key=lambda f: order.get(_block(f), len(BLOCKS)))  # Stable.


def _same(a, b) -> bool:
  as_tuple = lambda v: tuple(v) if isinstance(v, list | tuple) else v  # noqa: E731
  return as_tuple(a) == as_tuple(b)


def _meaning(field: str, c: Mapping) -> str:
  """What ``field`` means: to the component ``c`` chooses, from its docstring
  (``ltjax.config.declared``), or the run skeleton's ``FIELD_DOCS``."""
  registries = declared.owners(field)
  if registries:
    found = declared.meaning(field, {s: c.get(s) for s in registries})
    if found:
      return found
  # A block one class owns (OLTR's), or a field of one (Stage, Optimization).
  found = declared.owned_meaning(field)
  if found:
    return found
  return FIELD_DOCS.get(field, "not a field of ltjax's base config: nothing reads it.")


def help_text(config, unread: Iterable[str] = ()) -> str:
  """The fields ``config``'s components read, block by block, one option a line:
  ``  --config.<field>=<value>  <meaning> (default <default>)``, the default only where the
  value differs from the base config's. See :func:`read_fields` for the arguments."""
  c = _flat(config.to_dict() if hasattr(config, "to_dict") else config)
  defaults = _flat(base_config().to_dict())
  lines: list[str] = []
  block = None
  for field in read_fields(config, unread):
    here = _block(field)
    if here != block:
      block = here
      lines += ["", f"{here or 'run'}:"]
    meaning = _meaning(field, c)
    if field in defaults and not _same(c[field], defaults[field]):
      meaning = f"{meaning} (default {defaults[field]!r})"
    line = f"  --config.{field}={c[field]!r}  {meaning}"
    lines.append(textwrap.fill(line, width=100, subsequent_indent="      ", break_on_hyphens=False))
  return "\n".join(lines[1:])
