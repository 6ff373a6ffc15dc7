"""Tiny random-weight models of the real architectures, built offline.

Tests and the local run load these through exactly the code that loads real weights, so nothing
in the serving path knows it is being tested. Outputs are noise: assert structure, not content.
"""
