"""Shared test helpers: fixtures builders, quiet trainers, data builders, probe callbacks and test-only hooks.

Tests import helpers from here, never from other test modules or from ``benchmarks/``.
"""
