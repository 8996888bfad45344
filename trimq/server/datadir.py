"""Whether the data directory is private: it holds messages, definitions and password hashes,
so group or others being able to enter or read it is worth a warning (at start, in the log,
and in `trimqctl status`). trimq creates it 0700; an existing one is left as it is."""

from __future__ import annotations

import stat
from pathlib import Path


def exposure_warning(data_dir: Path | None) -> str | None:
    """A warning when group or others have any access to `data_dir`, else None."""
    if data_dir is None:
        return None
    try:
        mode = stat.S_IMODE(Path(data_dir).stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (
        f"data directory {data_dir} is accessible to group or others (mode {mode:04o}); "
        f"it holds messages and password hashes: chmod 700 {data_dir}"
    )
