"""Serve a simulated cell processor over Modbus TCP until SIGINT or SIGTERM.

Example: ``python -m simulators.centrifuge --port 5020 --time-scale 60``
"""

import sys

from simulators.centrifuge.modbus_server import CellProcessorServer
from simulators.modbus_instrument import command_line

main, serve = command_line(CellProcessorServer, prog="python -m simulators.centrifuge", port=5020)

if __name__ == "__main__":
    sys.exit(main())
