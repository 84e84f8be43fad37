"""Instrument simulators that are real protocol servers.

Imports nothing else of cellbatch: only the standard library, asyncua and pymodbus.

* :mod:`simulators.clock` — :class:`~simulators.clock.ScaledClock`, the shared
  simulated time.
* :mod:`simulators.bioreactor` — rocking-motion bioreactors over OPC UA.
* :mod:`simulators.modbus_instrument` — the lifecycle the Modbus simulators share.
* :mod:`simulators.centrifuge` — a counterflow centrifuge / cell processor over Modbus TCP.
* :mod:`simulators.serial_instruments` — a peristaltic pump and an MT-SICS balance on ptys.
* :mod:`simulators.launch` — start the simulators a plant file lists.
"""
