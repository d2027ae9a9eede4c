"""Deterministic simulations of the smesher protocols."""
