"""Serial instruments on pseudo-terminals: a peristaltic pump and an MT-SICS balance.

The pump's flow lands on the balance through a shared :class:`~.bench.Bench`.
"""
