"""The L1 smesher node: layer clock, bundle gossip, per-layer agreement, block building."""
