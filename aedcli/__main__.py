"""``python -m aedcli`` runs the ``aed`` command line (``torchrun -m aedcli distill ...`` included)."""

from aedcli.cli.app import main

main()
