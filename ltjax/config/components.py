"""Registered components whose dataclass fields are their options, read from one config
block by name (backbones from ``config.model``, optimizers from ``config.optim``): building
one with its options, and finding another member's option set in the block, which would
otherwise do nothing without a word. JAX-free, so every layer can call it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any


class Registry(dict):
  """name -> the registered member of one kind of component (a loss, a head, a dataset
  entry, ...): ``register`` adds one under its ``name`` (a class decorator), ``lookup``
  returns one or refuses an unknown name, naming the config field that chooses and the
  valid names. A dict otherwise (``REGISTRY.get(name)`` is None for an unknown name).

  Attributes:
    what: what a member is, for messages ("loss").
    selector: the config field that chooses a member ("loss.name").
    many: the field is a tuple of names (``eval.evaluators``): a name given as ``a,b``
      gets the tuple syntax that works.
  """

  def __init__(self, what: str, selector: str, many: bool = False):
    super().__init__()
    self.what, self.selector, self.many = what, selector, many

  def register(self, member):
    """Adds ``member`` under ``member.name``; a second, different member of a taken name is
    refused (it would silently replace the first)."""
    taken = dict.get(self, member.name)
    if taken is not None and taken != member:
      raise ValueError(f"{self.what} {member.name!r} is already registered ({taken}).")
    self[member.name] = member
    return member

  def lookup(self, name):
    """The member registered as ``name``.

    Raises:
      ValueError: an unknown name, listing the valid ones.
    """
    try:
      return self[name]
    except (KeyError, TypeError):  # TypeError: an unhashable value (a list).
      hint = tuple_hint(self.selector, str(name)) if self.many else ""
      valid = ", ".join(repr(n) for n in self)
      raise ValueError(
        f"--config.{self.selector}={name!r}: unknown {self.what}; valid: {valid}." + hint
      ) from None


#: No default to judge an option against.
_NONE = object()


class UnreadOption(ValueError):
  """An option that none of the run's chosen components reads, set away from its default:
  refused for a run to train (it would do nothing without a word). ``key`` is its config
  field ("loss.gamma"), ``default`` the value that means the same run: a finished run whose
  config sets it (saved before ltjax refused it) is evaluated with it there
  (``ltjax.train.restore.restore_trained``), since it changed nothing."""

  def __init__(self, message: str, key: str, default: Any):
    super().__init__(message)
    self.key, self.default = key, default


def options(cls: type) -> dict[str, Any]:
  """``{option: default}`` of a registered dataclass."""
  return {f.name: f.default for f in dataclasses.fields(cls)}


def build(cls: type, block: Mapping) -> Any:
  """``cls`` with each of its options taken from ``block`` where set there."""
  return cls(**{k: block[k] for k in options(cls) if k in block})


def tuple_hint(field: str, value: str) -> str:
  """For a tuple field given ``a,b`` on the command line (absl reads a tuple from Python
  syntax only, so it arrives as one name): the syntax that works, or "" for another
  value."""
  if "," not in value:
    return ""
  names = [repr(n.strip()) for n in value.split(",") if n.strip()]
  listed = ", ".join(names) + ("," if len(names) == 1 else "")
  return f' Give several as a tuple: --config.{field}="({listed})".'


def unread_option(
  block: Mapping, chosen: Sequence[tuple[Mapping[str, type], str]], defaults: Mapping | None = None
):
  """The first option (by name) of the members of registries that share ``block`` which
  ``block`` sets away from its default while none of the ``chosen`` members reads it, or
  None; else ``(option, value, default, owners)``, ``owners`` the ``(registry, class)``
  pairs that have it.

  ``chosen`` holds ``(registry, name)`` pairs, one per registry whose members read
  ``block`` (``config.data``: the augmentation's and the evaluation transform's); a name of
  None: none of that registry is chosen. An option its owners require (no default) is
  judged against ``defaults`` (the block's in ``ltjax.config.schema``), or not at all."""
  read = {f for registry, name in chosen if name is not None for f in options(registry[name])}
  owners: dict[str, list[tuple[Mapping[str, type], type]]] = {}
  for registry, _ in chosen:
    for cls in registry.values():
      for f in options(cls):
        if f not in read:
          owners.setdefault(f, []).append((registry, cls))
  for field in sorted(owners):
    own = [options(cls)[field] for _, cls in owners[field]]
    required = (defaults or {}).get(field, _NONE)
    default = next((d for d in own if d is not dataclasses.MISSING), required)
    if default is _NONE or field not in block:
      continue
    if block[field] != default:
      return field, block[field], default, owners[field]
  return None


def foreign_option(registry: Mapping[str, type], name: str, block: Mapping):
  """The first option (by name) of other members of ``registry`` that ``block`` sets away
  from its default while ``registry[name]`` has no such option: ``(option, value, default,
  owners)`` with ``owners`` the classes that have it, or None."""
  found = unread_option(block, [(registry, name)])
  if found is None:
    return None
  field, value, default, owners = found
  return field, value, default, [cls for _, cls in owners]


def refuse_unread_option(
  block: Mapping, chosen: Sequence[tuple[Registry, str]], defaults: Mapping | None = None
) -> None:
  """ValueError for the first option ``unread_option`` finds, naming the field, the
  members it belongs to (by the field that chooses them) and the value to leave it at:
  set, it would do nothing without a word."""
  found = unread_option(block, chosen, defaults)
  if found is None:
    return
  field, value, default, owners = found
  where = chosen[0][0].selector.partition(".")[0]
  by_selector: dict[str, list[str]] = {}
  for registry, cls in owners:
    by_selector.setdefault(registry.selector, []).append(repr(cls.name))
  owned = " and ".join(f"{sel}={' / '.join(names)}" for sel, names in by_selector.items())
  if len(chosen) == 1:
    instead = repr(chosen[0][1])
  else:
    instead = " or ".join(f"{registry.selector}={name!r}" for registry, name in chosen)
  raise UnreadOption(
    f"--config.{where}.{field}={value!r} is an option of {owned}, not of {instead}: "
    f"leave it {default!r}.",
    f"{where}.{field}",
    default,
  )


def refuse_foreign_option(
  registry: Registry, name: str, block: Mapping, defaults: Mapping | None = None
) -> None:
  """``refuse_unread_option`` for one registry: an option of its other members that
  ``block`` sets away from its default (``config.optim``: ``--config.optim.step_gamma=0.5
  is an option of optim.schedule='step' / 'multistep', not of 'cosine': leave it 0.1.``)."""
  refuse_unread_option(block, [(registry, name)], defaults)
