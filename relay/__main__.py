"""`python -m relay --config FILE [--node NAME]`: run the relay until SIGTERM or SIGINT."""

from devnet.daemon import main
from relay.node import Relay

if __name__ == "__main__":
    main("relay", lambda config, name, _: Relay(config, name or config.relay.name).run)
