"""athena-devnet: what every process shares, and what a user drives."""
