"""Smoke tests of the bench tools: bench/scaling.py and bench/chart.py, bench/rawgen.py (with its
pika latency probe), run with tiny sizes against a trimq-server of the test's own. They check
that the tools run and write JSON of the expected shape with positive figures; timings are not
asserted (the machine is shared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Broker

BENCH = Path(__file__).resolve().parent.parent / "bench"

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: starts its own trimq-server"
)


def amqp_url(node: Broker) -> str:
    return f"amqp://guest:guest@{node.host}:{node.port}/"


def bench(script: str, *args: str, timeout: float = 100) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout}{done.stderr}"


def test_scaling_json_and_chart(node: Broker, tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    bench(
        "scaling.py",
        "--url",
        f"trimq={amqp_url(node)}",
        "--queues",
        "1,3",
        "--connections",
        "1,3",
        "--messages",
        "3000",
        "--rounds",
        "1",
        "--prefetch",
        "40",  # acks every 10 deliveries go out between the publishes
        "--out",
        str(out),
    )
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["kind"] == "scaling"
    assert doc["brokers"] == ["trimq"]
    assert doc["failures"] == []
    assert set(doc["series"]) == {"queues", "connections"}
    for series in doc["series"].values():
        points = series["trimq"]
        assert set(points) == {"1", "3"}
        for point in points.values():
            assert len(point["runs"]) == 1
            assert point["median"] > 0
            assert point["min"] <= point["median"] <= point["max"]

    pytest.importorskip("matplotlib")
    png = tmp_path / "scaling.png"
    bench("chart.py", str(out), "-o", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rawgen_and_pika_latency(node: Broker, tmp_path: Path) -> None:
    out = tmp_path / "rawgen.json"
    bench(
        "rawgen.py",
        "--broker",
        f"trimq={amqp_url(node)}",
        "--runs",
        "1",
        "--sizes",
        "s1_messages=500,s2_messages=200,s4_messages=10,s5_rate=1000,s5_seconds=0.5,s5_warmup=50",
        "--out",
        str(out),
    )
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["kind"] == "rawgen"
    assert doc["failures"] == []
    expected = {
        "s1 transient 16 B e2e msg/s",
        "s2 persistent+confirms e2e msg/s",
        "s2 confirmed msg/s",
        "s4 256 KiB e2e msg/s",
        "s4 256 KiB MiB/s",
        "s5 pika latency p50 ms",
        "s5 pika latency p99 ms",
        "s5 pika achieved msg/s",
    }
    assert set(doc["results"]) == expected
    for metric in expected:
        row = doc["results"][metric]["trimq"]
        assert row["runs"] and row["median"] > 0, metric
