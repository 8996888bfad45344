"""The command-line tool that administers the broker under test: trimqctl on the session's
trimq-server, or with TRIMQ_TEST_URL the reference broker's rabbitmqctl given as
TRIMQ_TEST_RABBITMQCTL (tools/rabbitmq_reference.sh sets it), so one test compares both."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass

import pytest
from conftest import Broker

REFERENCE = os.environ.get("TRIMQ_TEST_URL")
ADMIN = os.environ.get("TRIMQ_TEST_RABBITMQCTL")


@dataclass
class Admin:
    """The tool (argv prefix) that administers the broker."""

    tool: list[str]

    def __call__(self, *args: str) -> tuple[int, list[str], list[str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMQ_")}
        result = subprocess.run(
            [*self.tool, *args], check=False, capture_output=True, text=True, timeout=120, env=env
        )
        # rabbitmqctl can print a log line (with its time) before "Error:"; it is no answer
        err = [
            line
            for line in result.stderr.splitlines()
            if line and not re.match(r"\d\d:\d\d:\d\d\.\d+ \[", line)
        ]
        return result.returncode, result.stdout.splitlines(), err

    def ok(self, *args: str) -> list[str]:
        code, out, err = self(*args)
        assert code == 0, (args, out, err)
        return out


def admin_tool(broker: Broker) -> Admin:
    """The tool for `broker` (the session's); skips when the reference has none."""
    if REFERENCE:
        if not ADMIN:
            pytest.skip("TRIMQ_TEST_RABBITMQCTL (the reference broker's rabbitmqctl) unset")
        return Admin(shlex.split(ADMIN))
    return Admin([sys.executable, "-m", "trimq.cli.ctl", "--data-dir", str(broker.data_dir)])
