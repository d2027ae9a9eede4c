"""Athena execution shared by the executor and the shadow executor."""
