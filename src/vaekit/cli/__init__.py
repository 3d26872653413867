"""Command line: parse arguments and call one library function per command.

* :mod:`vaekit.cli.main`: ``main(argv)``, the entry point, and its one-line errors;
* :mod:`vaekit.cli.parser`: every command and its flags;
* :mod:`vaekit.cli.flags`: flags generated from config fields, and the parser conventions
  every command shares;
* :mod:`vaekit.cli.commands`: one function per command.
"""

from vaekit.cli.main import main

__all__ = ["main"]
