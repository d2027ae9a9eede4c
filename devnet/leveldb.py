"""Opening a process's LevelDB, with the error a user can act on."""

from pathlib import Path

import plyvel

from devnet.errors import DevnetError


def open_db(path: Path, error: type[DevnetError] = DevnetError) -> plyvel.DB:
    """Create or open the database at `path`; LevelDB allows one process per database.

    `error` is the caller's own exception class, raised when the database cannot be opened.
    """
    path.mkdir(parents=True, exist_ok=True)
    try:
        return plyvel.DB(str(path), create_if_missing=True)
    except plyvel.Error as exc:
        raise error(
            f"cannot open {path}: {exc} (is another process using this data directory?)"
        ) from None
