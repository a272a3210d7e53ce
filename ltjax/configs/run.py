"""The config a run was trained with, read from its work directory's config.json.

``ltjax evaluate --workdir=DIR`` uses it when no ``--config`` is given (the command line
passes ``--config=<this file>:DIR``), so a run is evaluated as it was trained; overrides
such as ``--config.eval.batch_size=256`` apply on top, and ``ltjax evaluate`` refuses those
that would change what was trained (``ltjax.config.EVALUATION_FIELDS`` lists the others).
"""

from ltjax import config as config_lib


def get_config(workdir):
  return config_lib.of_run(workdir)
