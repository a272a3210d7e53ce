"""``ltjax import-torch``: a reference PyTorch checkpoint as a finished ltjax run, apart from
the other commands because it alone needs PyTorch (imported inside it)."""

from __future__ import annotations

from absl import app

from ltjax.cli.flags import ALLOW_PICKLE, CONFIG, WORKDIR, require


def cmd_import_torch(argv) -> None:
  """Writes a reference PyTorch checkpoint (classifier-balancing / OLTR
  final_model_checkpoint.pth) as a finished run of the config in --workdir."""
  paths = argv[1:]
  if len(paths) != 1:
    raise app.UsageError(f"import-torch takes one checkpoint file, got {paths or 'none'}.")
  require(CONFIG, "config")
  require(WORKDIR, "workdir")
  try:
    from ltjax.interop import torch_import

    summary = torch_import.import_checkpoint(
      paths[0], CONFIG.value, WORKDIR.value, allow_pickle=ALLOW_PICKLE.value
    )
  except ImportError as e:
    raise ValueError(str(e)) from e
  print(
    f"imported {paths[0]}: {summary['tensors']} tensors ({summary['parameters']:,} values) "
    f"into {summary['workdir']} as a finished '{summary['stage']}' run (step {summary['step']})."
    f"\nevaluate it with: ltjax evaluate --config=... --workdir={summary['workdir']}"
  )
