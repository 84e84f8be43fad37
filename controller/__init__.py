"""The batch engine: binds recipes to plant equipment, runs ISA-88 state machines,
records everything to the eBR; the CLI and service entry points live here too."""

__version__ = "0.1.0"
