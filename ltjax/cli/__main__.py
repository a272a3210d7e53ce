"""``python -m ltjax.cli``: the ``ltjax`` command, as the tests and scripts run it."""

from ltjax.cli import main

main()
