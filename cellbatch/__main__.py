"""``python -m controller`` is the ``cellbatch`` command."""

from cellbatch.cli import main

main()
