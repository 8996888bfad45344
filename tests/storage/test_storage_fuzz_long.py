"""The storage fuzz tests at length: `pytest -m slow tests/storage` runs them again with
TRIMQ_STORAGE_LONG examples per test (2000 by default). Skipped unless slow tests are asked
for. (The same as TRIMQ_STORAGE_EXAMPLES=2000 pytest tests/storage.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FUZZ_FILES = [
    "test_storage_recovery_fuzz.py",
    "test_storage_compaction.py",
    "test_storage_checkpoint.py",
    "test_storage_torn_batches.py",
]


@pytest.mark.slow
@pytest.mark.timeout(7200)
@pytest.mark.parametrize("name", FUZZ_FILES)
def test_long(name: str, request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("long fuzz run: select it with -m slow")
    env = dict(os.environ, TRIMQ_STORAGE_EXAMPLES=os.environ.get("TRIMQ_STORAGE_LONG", "2000"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--timeout",
            "7200",
            str(HERE / name),
        ],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
