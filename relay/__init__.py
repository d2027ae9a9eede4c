"""The relay: public RPC, Athena mempool, bundling, L1 fee payment."""
