"""Benchmarks: figures measured side by side with raw baselines in one run."""
