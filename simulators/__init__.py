"""Instrument simulators that are real protocol servers.

Imports nothing else of cellbatch: only the standard library and asyncua.

* :mod:`simulators.clock` — :class:`~simulators.clock.ScaledClock`, the shared
  simulated time.
* :mod:`simulators.bioreactor` — rocking-motion bioreactors over OPC UA.
* :mod:`simulators.launch` — start the simulators a plant file lists.
"""
