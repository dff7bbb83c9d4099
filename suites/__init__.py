"""Conformance suites, one file per rule family, run by `pytest --spekvm-target=...`."""
