"""`python -m smesher --config FILE --node NAME`: run one smesher until SIGTERM or SIGINT."""

from devnet.daemon import main
from smesher.node import Smesher

if __name__ == "__main__":
    main("smesher", lambda config, name, _: Smesher(config, name or "smesher-0").run)
