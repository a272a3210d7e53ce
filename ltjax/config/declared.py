"""What the registered components declare, read from their source without importing them.

A loss, sampler, optimizer, learning-rate schedule, evaluator, augmentation, evaluation
transform, classifier head, backbone or fine-tuning method is a ``@register``-ed dataclass: its
fields are its options, and its docstring's ``Attributes:`` section says what each one
means, the one place that meaning is written. Those modules import JAX, and loading a config
or printing its ``--help`` must not (``ltjax train --config=FILE --help`` answers without
it), so the config layer reads the classes from their source text: each registered class's
name, its fields (its dataclass bases' first, in ``dataclasses.fields``' order) and the
meanings of its Attributes section (its bases' too). ``tests/test_config_help.py`` holds
this reading against the imported registries, so the two cannot drift.

A backbone family registered under many names (``cifar_resnet8`` ... ``56``) is one class
with a ``names`` pattern: its entry is keyed by that regex, and ``resolve`` finds the entry
of a name.

A component registered at run time (an extension defined outside ``ltjax/``) is not in these
tables: ``--help`` then lists every option of its block, as before it knew any.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
import re

#: The config field that chooses a component (its block is where the component's options
#: are) -> the module (relative to the ``ltjax`` package) whose registered classes it chooses
#: among, and the base class they derive from where the module registers two kinds (None:
#: every registered class of the module).
SOURCES: dict[str, tuple[str, str | None]] = {
  "loss.name": ("losses/classification.py", None),
  "sampler.name": ("data/samplers.py", None),
  "optim.name": ("train/optim.py", "Optimizer"),
  "optim.schedule": ("train/optim.py", "Schedule"),
  "eval.evaluators": ("evaluate/evaluators.py", None),
  "model.head": ("models/head_registry.py", None),
  "model.peft": ("models/peft.py", None),
  # After model.peft: a fine-tuning option's meaning is its method's, not the ViTs'.
  "model.backbone": ("models/backbones.py", "Backbone"),
  "data.augment": ("data/pp/augment.py", "Augmentation"),
  "data.eval_transform": ("data/pp/augment.py", "EvalTransform"),
}


#: A config block one class owns whole (no field chooses among several) -> its module and
#: the class, whose fields are the block's options.
OWNED_BLOCKS: dict[str, tuple[str, str]] = {
  "oltr": ("train/stages/oltr.py", "OLTROptions"),
}

#: A field that is an option of one class (a field of it, of the same name as the field's
#: last part, meant in its docstring), in a block where no field chooses that class -> its
#: module and the class.
OWNED_FIELDS: dict[str, tuple[str, str]] = {
  "update_frozen_bn": ("train/stages/base.py", "Stage"),
  **{
    f"optim.{f}": ("train/optim.py", "Optimization")
    for f in ("lr", "head_lr", "momentum", "weight_decay", "lr_update", "warmup_epochs", "freeze")
  },
}


#: The package of the stages (``ltjax.train.stages``), and the fields a stage reads by the
#: class attribute of ``Stage`` that says it reads them: its earlier run (``copies``), its
#: frozen backbone's BatchNorm (``frozen_backbone``), mixed batches (``mixes_batches``).
STAGES_PACKAGE = "train/stages"
STAGE_FLAGS: dict[str, tuple[str, ...]] = {
  "copies": ("init_from",),
  "frozen_backbone": ("update_frozen_bn",),
  "mixes_batches": ("data.mixup_alpha", "data.cutmix_alpha"),
}


def selectors(block: str) -> tuple[str, ...]:
  """The ``SOURCES`` fields of config block ``block``."""
  return tuple(s for s in SOURCES if s.partition(".")[0] == block)


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ENTRY = re.compile(r"(\w+)(?: \([^)]*\))?:(?: (.*))?$")


@dataclasses.dataclass(frozen=True)
class Declared:
  """One registered component as its source declares it."""

  name: str  # Its registry name (``cls.name``).
  fields: tuple[str, ...]  # Its dataclass fields, in ``dataclasses.fields`` order.
  meanings: dict[str, str]  # Field -> its Attributes entry (the bases' included).


def attributes(doc: str | None) -> dict[str, str]:
  """``{name: meaning}`` of a Google-style docstring's ``Attributes:`` section; a meaning
  runs over its indented continuation lines, joined with spaces."""
  out: dict[str, str] = {}
  inside, indent, current = False, None, None
  for line in (doc or "").splitlines():
    if not inside:
      inside = line.strip() == "Attributes:"
      continue
    if not line.strip():
      if out:
        break
      continue
    here = len(line) - len(line.lstrip())
    indent = here if indent is None else indent
    if here < indent:
      break
    if here == indent:
      match = _ENTRY.match(line.strip())
      if not match:
        break
      current = match.group(1)
      out[current] = (match.group(2) or "").strip()
    elif current is not None:
      out[current] = f"{out[current]} {line.strip()}".strip()
  return out


def _is_registered(node: ast.ClassDef) -> bool:
  for d in node.decorator_list:
    if (isinstance(d, ast.Name) and d.id == "register") or (
      isinstance(d, ast.Attribute) and d.attr == "register"
    ):
      return True
  return False


def _assigned(node: ast.ClassDef, attr: str) -> ast.expr | None:
  """The expression the class's own body assigns to ``attr`` (``attr = ...`` or
  ``attr: ClassVar[...] = ...``), if it does."""
  for stmt in node.body:
    target = value = None
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
      target, value = stmt.targets[0], stmt.value
    elif isinstance(stmt, ast.AnnAssign):
      target, value = stmt.target, stmt.value
    if isinstance(target, ast.Name) and target.id == attr and value is not None:
      return value
  return None


def _own_name(node: ast.ClassDef, attr: str = "name") -> str | None:
  """The class's ``name = "..."`` (``attr`` for another attribute), if it sets one."""
  value = _assigned(node, attr)
  return value.value if isinstance(value, ast.Constant) else None


def _bases(node: ast.ClassDef, classes: dict) -> list[ast.ClassDef]:
  return [classes[b.id] for b in node.bases if isinstance(b, ast.Name) and b.id in classes]


def _fields(node: ast.ClassDef, classes: dict) -> list[str]:
  out: list[str] = []
  for base in _bases(node, classes):
    out += [f for f in _fields(base, classes) if f not in out]
  for stmt in node.body:
    if (
      isinstance(stmt, ast.AnnAssign)
      and isinstance(stmt.target, ast.Name)
      and "ClassVar" not in ast.unparse(stmt.annotation)
      and stmt.target.id not in out
    ):
      out.append(stmt.target.id)
  return out


def _meanings(node: ast.ClassDef, classes: dict) -> dict[str, str]:
  out: dict[str, str] = {}
  for base in _bases(node, classes):
    out |= _meanings(base, classes)
  return out | attributes(ast.get_docstring(node))


def _name(node: ast.ClassDef, classes: dict) -> str | None:
  own = _own_name(node)
  if own is not None:
    return own
  for base in _bases(node, classes):
    inherited = _name(base, classes)
    if inherited is not None:
      return inherited
  return None


def _derives(node: ast.ClassDef, base: str | None, classes: dict) -> bool:
  if base is None or node.name == base:
    return True
  return any(_derives(b, base, classes) for b in _bases(node, classes))


def read_source(text: str, base: str | None = None) -> dict[str, Declared]:
  """``{registry name: Declared}`` of the ``@register``-ed classes in a module's source
  (those deriving from the class named ``base``, where given), and of the family classes
  that set a ``names`` pattern, keyed by it."""
  tree = ast.parse(text)
  classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
  out = {}
  for node in classes.values():
    if not _derives(node, base, classes):
      continue
    if _is_registered(node):
      name = _name(node, classes)
    else:  # A family registered by a loop: its pattern ("" is the base's: none).
      name = _own_name(node, "names") or None
    if name is not None:
      out[name] = Declared(name, tuple(_fields(node, classes)), _meanings(node, classes))
  return out


@functools.cache
def declared(selector: str) -> dict[str, Declared]:
  """The components the config field ``selector`` (``"loss.name"``) chooses among
  (``SOURCES``)."""
  module, base = SOURCES[selector]
  with open(os.path.join(_PACKAGE, module), encoding="utf-8") as f:
    return read_source(f.read(), base)


@functools.cache
def owned(block: str) -> Declared:
  """The class that owns config block ``block`` whole (``OWNED_BLOCKS``), or run-level field
  ``block`` (``OWNED_FIELDS``)."""
  module, class_name = OWNED_BLOCKS.get(block) or OWNED_FIELDS[block]
  with open(os.path.join(_PACKAGE, module), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
  node = classes[class_name]
  return Declared(block, tuple(_fields(node, classes)), _meanings(node, classes))


@dataclasses.dataclass(frozen=True)
class StageReads:
  """The fields a stage reads of those some stages read and others do not."""

  reads: tuple[str, ...]  # Always.
  when_set: tuple[str, ...]  # Only as an opt-in: listed when set.


_MISSING = object()


def _class_value(node: ast.ClassDef, attr: str, classes: dict):
  """The literal a class (or the nearest base) assigns to ``attr``; ``_MISSING`` if none."""
  value = _assigned(node, attr)
  if value is not None:
    return ast.literal_eval(value)
  for base in _bases(node, classes):
    found = _class_value(base, attr, classes)
    if found is not _MISSING:
      return found
  return _MISSING


@functools.cache
def stages() -> dict[str, StageReads]:
  """``{stage name: StageReads}`` of the stages in ``ltjax.train.stages``, from their class
  attributes (``STAGE_FLAGS``, ``block``, ``reads_when_set``)."""
  from ltjax.config.schema import base_config

  folder = os.path.join(_PACKAGE, STAGES_PACKAGE)
  classes: dict[str, ast.ClassDef] = {}
  for module in sorted(os.listdir(folder)):
    if module.endswith(".py"):
      with open(os.path.join(folder, module), encoding="utf-8") as f:
        tree = ast.parse(f.read())
      classes |= {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
  out = {}
  for node in classes.values():
    name = _own_name(node)
    if not isinstance(name, str):
      continue
    reads = [
      f for flag, fields in STAGE_FLAGS.items() if _class_value(node, flag, classes) for f in fields
    ]
    block = _class_value(node, "block", classes)
    if block and block is not _MISSING:
      reads += [f"{block}.{k}" for k in base_config()[block]]
    when_set = _class_value(node, "reads_when_set", classes)
    out[name] = StageReads(tuple(reads), tuple(() if when_set is _MISSING else when_set))
  return out


def stage_specific() -> tuple[str, ...]:
  """The fields some stage reads and another does not."""
  seen = dict.fromkeys(f for fields in STAGE_FLAGS.values() for f in fields)
  for stage in stages().values():
    seen |= dict.fromkeys((*stage.reads, *stage.when_set))
  return tuple(seen)


def resolve(selector: str, name: str) -> str | None:
  """The ``declared(selector)`` entry of the component registered as ``name``: its own, or
  the family whose ``names`` pattern it fullmatches; None for a name ltjax's source does
  not declare (an extension's)."""
  table = declared(selector)
  if name in table:
    return name
  return next((k for k in table if re.fullmatch(k, str(name))), None)


@functools.cache
def options(selector: str) -> dict[str, tuple[str, ...]]:
  """``{component: its options}``: its fields that are options of its block in the base
  config (a sampler's run-wide ``num_epochs`` and ``batch_size`` are not)."""
  from ltjax.config.schema import base_config

  keys = set(base_config()[selector.partition(".")[0]])
  return {n: tuple(f for f in d.fields if f in keys) for n, d in declared(selector).items()}


def option_fields(selector: str) -> tuple[str, ...]:
  """``"block.option"`` of every option some component ``selector`` chooses among declares."""
  block = selector.partition(".")[0]
  seen = dict.fromkeys(f"{block}.{o}" for opts in options(selector).values() for o in opts)
  return tuple(seen)


def owners(field: str) -> tuple[str, ...]:
  """The ``SOURCES`` fields whose components declare ``field`` (``"data.crop_size"``: the
  augmentations' and the evaluation transforms')."""
  return tuple(s for s in selectors(field.partition(".")[0]) if field in option_fields(s))


def owned_meaning(field: str) -> str | None:
  """What ``field`` (``"oltr.margin"``, ``"update_frozen_bn"``) means to the class that owns
  its block or it, or None."""
  if field in OWNED_FIELDS:
    owner, option = field, field.rpartition(".")[2]
  else:
    owner, _, option = field.partition(".")
    if owner not in OWNED_BLOCKS:
      return None
  return owned(owner).meanings.get(option, "").replace("``", "") or None


def meaning(field: str, chosen: dict) -> str | None:
  """What ``field`` (``"loss.gamma"``) means to the components the config chooses
  (``chosen``: ``{selector: its value}``, a name or the names ``eval.evaluators`` lists),
  ``"<name>: <meaning>"``, joined with "; " when several chosen ones read it; to the first
  component that declares it when no chosen one does; None when no component declares it."""
  option = field.partition(".")[2]
  picked, others = [], []
  for selector in owners(field):
    value = chosen.get(selector)
    names = [value] if isinstance(value, str) else list(value or ())
    table = declared(selector)
    having = [n for n in table if option in options(selector)[n]]
    # Named as the config names it (a backbone, not its family's pattern).
    picked += [(n, table[key]) for n in names if (key := resolve(selector, n)) in having]
    others += [(n, table[n]) for n in having]
  said = [
    f"{name or repr(name)}: {text}"
    for name, component in picked
    if (text := component.meanings.get(option, "").replace("``", ""))
  ]
  said = list(dict.fromkeys(said))
  if len(said) > 1:  # Each chosen one that reads it (data.crop_size: the augmentation's and
    return "; ".join(t.rstrip(".") for t in said) + "."  # the evaluation transform's).
  if said:
    return said[0]
  for name, component in others:
    text = component.meanings.get(option, "").replace("``", "")
    if text:
      return f"{name or repr(name)}: {text}"
  return None
