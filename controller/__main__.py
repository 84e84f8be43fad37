"""``python -m controller`` is the ``cellbatch`` command."""

from controller.cli import main

main()
