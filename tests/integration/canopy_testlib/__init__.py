"""Reusable pieces of Canopy's integration tests."""
