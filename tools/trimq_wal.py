"""trimq-wal without installing: `python tools/trimq_wal.py inspect DIR` (see storage/cli.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.cli import main

if __name__ == "__main__":
    sys.exit(main())
