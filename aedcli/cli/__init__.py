"""The ``aed`` command line (:mod:`aedcli.cli.app`); one module per command, shared options in
:mod:`aedcli.cli.options`."""
