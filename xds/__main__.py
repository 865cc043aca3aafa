"""``python -m xds``: the same CLI as the ``xds`` command (handy from a source checkout)."""

from .cli import main

main()
