"""Start-up recovery time of trimq-server on a fixed data directory (scenario 8's restarts,
repeatable): how long from spawning the process until a passive Queue.Declare reports every
message.

    .venv/bin/python bench/recovery.py prepare [--messages 1000000]
    .venv/bin/python bench/recovery.py measure [--rounds 3] [--profile DIR]

`prepare` starts the server on an empty data directory, declares a durable queue, publishes N
persistent 100-byte messages with confirms, SIGKILLs the server and keeps the data directory
as WORKDIR/killed: no checkpoint, recovery replays every segment.
`measure` first makes, for each server measured, a `clean` directory: that server recovers a
copy of `killed` and is stopped with SIGTERM, leaving a checkpoint (in its own format) at the
end of the log; the time the stop took is reported. Then every round copies each directory to
a scratch one, so that it starts from the same bytes (in the page cache), spawns the server on
it and times it; with --profile it runs the server under `py-spy record` and writes a
speedscope profile per run there.

The server is the venv's trimq-server with this checkout first on PYTHONPATH, or with
`--rev REV` (repeatable) the trimq and storage packages of those git revisions, exported to
WORKDIR/src-REV: the rounds then alternate between them, to compare revisions under the same
load.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import amqp_client as ac  # noqa: E402
import loadgen as lg  # noqa: E402

SERVER = ROOT / ".venv" / "bin" / "trimq-server"
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
QUEUE = "bench.recovery"
MODES = ("killed", "clean")


def copy_data(src: Path, dst: Path) -> None:
    """Copy a data directory, leaving out the control socket a killed server left behind."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.sock"))


class Server:
    def __init__(
        self,
        data_dir: Path,
        port: int,
        logfile: Path,
        profile: Path | None = None,
        src: Path = ROOT,
    ) -> None:
        self.url = f"amqp://guest:guest@127.0.0.1:{port}/"
        cmd = [str(SERVER), "--port", str(port), "--data-dir", str(data_dir), "--host", "127.0.0.1"]
        if profile is not None:
            cmd = [
                str(PY_SPY),
                "record",
                "--format",
                "speedscope",
                "--rate",
                "250",
                "-o",
                str(profile),
                "--",
                *cmd,
            ]
        # the management listener off: it starts after recovery and would only add its import
        # time (older revisions ignore the variable)
        env = dict(os.environ, PYTHONPATH=str(src), TRIMQ_MANAGEMENT_ENABLED="false")
        with open(logfile, "ab") as out:
            self.t0 = time.monotonic()
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def stop(self, sig: signal.Signals) -> None:
        """Signal the server (py-spy passes SIGTERM on to its child; SIGKILL goes to the
        server itself) and wait for it to exit."""
        target = self.proc.pid
        if sig == signal.SIGKILL and PY_SPY.name in str(self.proc.args):
            target = int(
                subprocess.run(
                    ["pgrep", "-P", str(self.proc.pid)], check=True, capture_output=True, text=True
                ).stdout.split()[0]
            )
        os.kill(target, sig)
        self.proc.wait(120)


def prepare(workdir: Path, n: int, port: int) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    data = workdir / "data"
    server = Server(data, port, workdir / "server.log")
    lg._wait_port(server.url, 60)
    c = ac.connect_channel(server.url)
    c.queue_declare(1, QUEUE, durable=True)
    c.close()
    started = time.monotonic()
    p = lg.publisher_proc(server.url, "", QUEUE, 100, n, True, True, 5000, 1000)
    if p["acked"] != n:
        raise SystemExit(f"{p['acked']} acks, {p['nacked']} nacks for {n} messages")
    print(f"published {n} in {time.monotonic() - started:.1f} s")
    time.sleep(0.5)
    server.stop(signal.SIGKILL)
    os.rename(data, workdir / "killed")
    (workdir / "messages").write_text(str(n))


def make_clean(workdir: Path, name: str, src: Path, n: int, port: int) -> tuple[Path, float]:
    """`killed` recovered by the server from `src` and stopped cleanly; and how long the stop
    took (most of it writing the checkpoint)."""
    clean = workdir / f"clean-{name}"
    shutil.rmtree(clean, ignore_errors=True)
    copy_data(workdir / "killed", clean)
    server = Server(clean, port, workdir / "server.log", src=src)
    lg.wait_ready(server.url, QUEUE, n, 300)
    time.sleep(0.5)
    started = time.monotonic()
    server.stop(signal.SIGTERM)
    return clean, time.monotonic() - started


def export(workdir: Path, rev: str) -> Path:
    """The trimq and storage packages of git revision `rev`, in a directory of their own."""
    src = workdir / f"src-{rev}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "trimq", "storage"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    return src


def measure(workdir: Path, rounds: int, port: int, profile: Path | None, revs: list[str]) -> None:
    n = int((workdir / "messages").read_text())
    scratch = workdir / "run"
    sources = {rev: export(workdir, rev) for rev in revs} or {"checkout": ROOT}
    templates: dict[tuple[str, str], Path] = {}
    for name, src in sources.items():
        templates[(name, "killed")] = workdir / "killed"
        templates[(name, "clean")], stop_s = make_clean(workdir, name, src, n, port)
        print(f"{name}: clean stop {stop_s:.2f} s", flush=True)
    times: dict[str, list[float]] = {f"{s} {m}": [] for s in sources for m in MODES}
    for r in range(rounds):
        for (name, src), mode in itertools.product(sources.items(), MODES):
            key = f"{name} {mode}"
            shutil.rmtree(scratch, ignore_errors=True)
            copy_data(templates[(name, mode)], scratch)
            out = None
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                out = profile / f"{key.replace(' ', '-')}-{r}.speedscope.json"
            server = Server(scratch, port, workdir / "server.log", out, src)
            try:
                _, ready = lg.wait_ready(server.url, QUEUE, n, 300)
                times[key].append(ready - server.t0)
            finally:
                server.stop(signal.SIGKILL)  # the scratch copy is thrown away
            print(f"round {r + 1} {key}: {times[key][-1]:.2f} s", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    for key, values in times.items():
        print(
            f"{key}: median {statistics.median(values):.2f} s "
            f"({', '.join(f'{t:.2f}' for t in values)})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("prepare", "measure"))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/trimq-recovery"))
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port", type=int, default=5899)
    ap.add_argument("--profile", type=Path, help="directory for py-spy profiles")
    ap.add_argument(
        "--rev",
        action="append",
        default=[],
        help="git revision to measure instead of the checkout (repeatable)",
    )
    args = ap.parse_args()
    if args.command == "prepare":
        prepare(args.workdir, args.messages, args.port)
    else:
        measure(args.workdir, args.rounds, args.port, args.profile, args.rev)


if __name__ == "__main__":
    main()
