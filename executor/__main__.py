"""`python -m executor --config FILE`: run the executor until SIGTERM or SIGINT."""

from devnet.daemon import main
from executor.node import Executor

if __name__ == "__main__":
    main("executor", lambda config, name, _: Executor(config, name).run)
