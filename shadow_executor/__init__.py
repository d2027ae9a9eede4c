"""The shadow executor: replays the L1's order independently and checks the executor's claims."""
