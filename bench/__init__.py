"""Benchmarks that run Stan against a real local control plane.

They live outside the packages Stan ships: they start clusters, create
thousands of objects and take minutes, so they are run by hand (``make
bench``), not by the tests.
"""
