"""The cellbatch application: the one composition root.

The click command line (every command group), ``demo``, ``sim serve``, the process of
``controller serve``, the Textual HMI and terminal helpers. It may import every room,
including ``simulators``; no room imports it.
"""
