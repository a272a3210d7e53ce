"""Registered components whose dataclass fields are their options, read from one config
block by name (backbones from ``config.model``, optimizers from ``config.optim``): building
one with its options, and finding another member's option set in the block, which would
otherwise do nothing without a word. JAX-free, so every layer can call it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
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


def foreign_option(registry: Mapping[str, type], name: str, block: Mapping):
  """The first option (by name) of other members of ``registry`` that ``block`` sets away
  from its default while ``registry[name]`` has no such option: ``(option, value, default,
  owners)`` with ``owners`` the classes that have it, or None."""
  own = options(registry[name])
  fields = sorted({f for cls in registry.values() for f in options(cls)} - set(own))
  for field in fields:
    owners = [cls for cls in registry.values() if field in options(cls)]
    default = options(owners[0])[field]
    if field in block and block[field] != default:
      return field, block[field], default, owners
  return None


def refuse_foreign_option(registry: Mapping[str, type], name: str, block: Mapping, selector: str):
  """ValueError for the first option of other members of ``registry`` that ``block`` sets
  away from its default (``foreign_option``), naming the field, the members it belongs to
  and the value to leave it at; ``selector`` is the field that chooses (``"optim.name"``)."""
  found = foreign_option(registry, name, block)
  if found is None:
    return
  field, value, default, owners = found
  where = selector.partition(".")[0]
  raise ValueError(
    f"--config.{where}.{field}={value!r} is an option of {selector}="
    f"{' / '.join(repr(o.name) for o in owners)}, not of {name!r}: leave it {default!r}."
  )
