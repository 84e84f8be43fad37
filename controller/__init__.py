"""The batch engine: binds recipes to plant equipment, runs ISA-88 state machines,
monitors and permissives, records everything to the eBR, and holds the service logic
behind the controller's OPC UA interface. Imports ``recipes``, ``drivers`` and ``ebr``."""

__version__ = "0.1.0"
