"""Serve a simulated controlled-rate freezer over Modbus TCP until SIGINT or SIGTERM.

Example: ``python -m simulators.freezer --port 5021 --time-scale 60``
"""

import sys

from simulators.freezer.modbus_server import FreezerServer
from simulators.modbus_instrument import command_line

main, serve = command_line(FreezerServer, prog="python -m simulators.freezer", port=5021)

if __name__ == "__main__":
    sys.exit(main())
