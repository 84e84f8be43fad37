"""Simulated rocking-motion bioreactors for T-cell expansion, served over OPC UA.

* :mod:`.kinetics` — cell growth, death and metabolism (pure functions).
* :mod:`.physics` — one vessel: equipment loops, mass balances, sensors.
* :mod:`.tags` — the tag list: names, units, access, setpoint limits.
* :mod:`.address_space` — builds the OPC UA address space from the tag list.
* :mod:`.write_guard` — refuses out-of-range setpoint writes per node.
* :mod:`.opcua_server` — :class:`~.opcua_server.BioreactorServer` and its update loop.
* ``python -m simulators.bioreactor`` — serve from the command line.
"""
