"""Benchmarks behind `devnet bench`."""
