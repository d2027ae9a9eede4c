"""`python -m devnet` is the `devnet` command."""

from devnet.cli import main

main()
