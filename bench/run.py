"""Run the benchmark scenarios against trimq and RabbitMQ 3.10 side by side.

    .venv/bin/python bench/run.py                     # all scenarios, 3 rounds
    .venv/bin/python bench/run.py --quick             # smoke setting, a couple of minutes
    .venv/bin/python bench/run.py --scenarios 1,2 --rounds 5 --profile

Starts both brokers itself (trimq with a fresh data directory; RabbitMQ from Debian's
rabbitmq-server package as a private node `trimq-bench-PORT@localhost` (`--rabbitmq-node`)
with its own base directory, set up like shared/tools/rabbitmq-node.sh but with another node
name so that it can run beside the shared rabbit-side node), runs each scenario against both,
alternating which goes first, for several rounds, prints the medians and the trimq/RabbitMQ
ratio, and updates bench/RESULTS.md. Both brokers are stopped at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import amqp_client as ac  # noqa: E402
import loadgen as lg  # noqa: E402

TRIMQ_SERVER = ROOT / ".venv" / "bin" / "trimq-server"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RESULTS = HERE / "RESULTS.md"
README = ROOT / "README.md"


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- brokers ------------------------------------------------------------------------------------
class Broker:
    name = "?"

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.url = f"amqp://guest:guest@127.0.0.1:{port}/"
        self.proc: subprocess.Popen[bytes] | None = None
        self.logfile = workdir / f"{self.name}.log"
        self.logfile.unlink(missing_ok=True)
        self.server_properties: dict[str, Any] = {}

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def pid(self) -> int:
        raise NotImplementedError

    def start(self) -> float:
        cmd, env = self.command()
        out = Path(self.logfile).open("ab")  # noqa: SIM115 - lives as long as the process
        out.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(cmd)}\n".encode())
        out.flush()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.workdir,
        )
        out.close()
        return t0

    def wait_up(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited while starting; see {self.logfile}:\n" + self.log_tail()
                )
            try:
                c = ac.Client(self.url, timeout=5)
            except (OSError, ac.BrokerError):
                time.sleep(0.05)
                continue
            self.server_properties = c.server_properties
            c.close()
            return
        raise RuntimeError(f"{self.name} not accepting connections after {timeout} s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _wait_exit(self, timeout: float) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, mode: str = "clean") -> float:
        """'kill': SIGKILL to the broker process; 'clean': SIGTERM. Returns the seconds until
        it exited."""
        if not self.alive():
            return 0.0
        assert self.proc is not None
        t0 = time.monotonic()
        if mode == "kill":
            os.kill(self.pid(), signal.SIGKILL)
        else:
            self.proc.send_signal(signal.SIGTERM)
        self._wait_exit(120)
        return time.monotonic() - t0

    def restart(self) -> None:
        time.sleep(0.5)  # trimq: a SIGTERM within ms of a client's Close waits 3 s
        self.stop("clean")
        self.start()
        self.wait_up()

    def wipe(self) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Stop, delete all data, start: nothing left over (trimq's online compaction of a
        deleted 1M-message queue, RabbitMQ's message store GC) runs into the next scenario."""
        time.sleep(0.5)
        self.stop("clean")
        self.wipe()
        self.start()
        self.wait_up()

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Trimq(Broker):
    """trimq-server from the venv. With a git revision, the trimq and storage packages of that
    revision are exported to WORKDIR/trimq-src and put first on PYTHONPATH, so the run measures
    a committed state even while the working tree is being edited."""

    name = "trimq"

    def __init__(self, port: int, workdir: Path, rev: str = "HEAD") -> None:
        super().__init__(port, workdir)
        self.data_dir = workdir / "trimq-data"
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.src: Path | None = None
        if rev == "worktree":
            self.commit = "working tree " + git("describe", "--always", "--dirty")
            return
        sha = git("rev-parse", "--verify", rev + "^{commit}")
        # the last commit that changed the broker (HEAD may be a bench/ or docs commit)
        self.commit = git("log", "-1", "--format=%h %s", sha, "--", "trimq", "storage")[:72]
        self.src = workdir / "trimq-src"
        shutil.rmtree(self.src, ignore_errors=True)
        self.src.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", sha, "trimq", "storage"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(self.src)], input=archive, check=True)

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        if self.src is not None:
            env["PYTHONPATH"] = str(self.src)
        # port 0: no management or Prometheus listener (bench/management.py measures them), so
        # runs side by side never collide on 15672 or 15692 (revisions before that took 0 as
        # any free port of 127.0.0.1; older ones ignore the variables)
        env.setdefault("TRIMQ_MANAGEMENT_HOST", "127.0.0.1")
        env.setdefault("TRIMQ_MANAGEMENT_PORT", "0")
        env.setdefault("TRIMQ_PROMETHEUS_HOST", "127.0.0.1")
        env.setdefault("TRIMQ_PROMETHEUS_PORT", "0")
        return (
            [
                str(TRIMQ_SERVER),
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
            ],
            env,
        )

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wipe(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


class RabbitMQ(Broker):
    name = "rabbitmq"

    def __init__(self, port: int, workdir: Path, node: str = "") -> None:
        super().__init__(port, workdir)
        # a node name of its own per port, so that two runs can share a machine
        self.node = node or f"trimq-bench-{port}@localhost"
        self.base = workdir / "rabbitmq"
        shutil.rmtree(self.base, ignore_errors=True)
        for d in ("mnesia", "log", "home"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")

    def command(self) -> tuple[list[str], dict[str, str]]:
        b = self.base
        env = dict(
            os.environ,
            HOME=str(b / "home"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(20000 + self.port),
            RABBITMQ_MNESIA_BASE=str(b / "mnesia"),
            RABBITMQ_LOG_BASE=str(b / "log"),
            RABBITMQ_LOGS="-",
            RABBITMQ_PID_FILE=str(b / "pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(b / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(b / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(b / "rabbitmq"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(b / "advanced.config"),
        )
        return [str(RABBITMQ_SERVER)], env

    def start(self) -> float:
        (self.base / "pid").unlink(missing_ok=True)
        return super().start()

    def wipe(self) -> None:
        shutil.rmtree(self.base / "mnesia", ignore_errors=True)
        (self.base / "mnesia").mkdir()

    def pid(self) -> int:
        """The beam.smp process (the wrapper shell is its parent)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                pid = int((self.base / "pid").read_text().strip())
                os.kill(pid, 0)
                return pid
            except (OSError, ValueError):
                time.sleep(0.05)
        raise RuntimeError("RabbitMQ wrote no pid file")


# -- machine and versions -----------------------------------------------------------------------
def machine_info(brokers: dict[str, Broker]) -> dict[str, str]:
    cpu = "?"
    with Path("/proc/cpuinfo").open() as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with Path("/proc/meminfo").open() as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    venv = subprocess.run(
        [
            str(VENV_PYTHON),
            "-c",
            "import sys, importlib.metadata as m; "
            "print(sys.version.split()[0], m.version('trio'), m.version('trimq'))",
        ],
        check=False,
        capture_output=True,
        text=True,
    ).stdout.split()
    try:
        otp = Path("/usr/lib/erlang/releases").glob("*/OTP_VERSION")
        erlang = next(otp).read_text().strip()
    except (StopIteration, OSError):
        erlang = "?"
    trimq_commit = getattr(brokers.get("trimq"), "commit", "?")

    def version(b: str) -> str:
        v = brokers[b].server_properties.get("version", "?") if b in brokers else "?"
        return v.decode() if isinstance(v, bytes) else str(v)

    return {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{mem_kib / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "python": venv[0] if venv else "?",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "trio": venv[1] if len(venv) > 1 else "?",
        "trimq": f"{venv[2] if len(venv) > 2 else '?'} ({trimq_commit})",
        "rabbitmq": version("rabbitmq"),
        "erlang": f"OTP {erlang}",
    }


# -- the table ----------------------------------------------------------------------------------
def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def lower_is_better(metric: str) -> bool:
    return (
        (any(k in metric for k in ("latency", "RSS", " s", "CPU")) and "/s" not in metric)
        or "/msg" in metric
        or "/delivery" in metric
    )


def table(
    results: dict[str, dict[str, list[float]]], order: list[str], brokers: list[str]
) -> list[list[str]]:
    rows = []
    for m in order:
        meds = {b: lg.median(results[b][m]) if results[b].get(m) else None for b in brokers}
        row = [m] + [fmt(meds[b]) for b in brokers]
        if len(brokers) == 2 and meds[brokers[0]] is not None and meds[brokers[1]]:
            row.append(f"{meds[brokers[0]] / meds[brokers[1]]:.2f}")  # type: ignore[operator]
        elif len(brokers) == 2:
            row.append("—")
        row.append("lower" if lower_is_better(m) else "higher")
        rows.append(row)
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(out)


def replace_section(text: str, tag: str, body: str) -> str:
    begin, end = f"<!-- bench:{tag} -->", f"<!-- /bench:{tag} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        return re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    return text.rstrip() + "\n\n" + block + "\n"


RESULTS_SKELETON = """# trimq benchmark results

Produced by `bench/run.py` (see bench/README.md). The sections between `bench:` markers are
rewritten by the runner; the rest is written by hand.
"""


def update_results(tag: str, body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else RESULTS_SKELETON
    RESULTS.write_text(replace_section(text, tag, body))


def update_readme(body: str) -> None:
    """The README's table of the latest complete run (between its bench:summary markers)."""
    text = README.read_text()
    if "<!-- bench:summary -->" in text:
        README.write_text(replace_section(text, "summary", body))


# -- profiling ----------------------------------------------------------------------------------
def frame_key(frame: str) -> str:
    """'func (path/file.py:123)' -> 'file.py:123 func' with the path shortened."""
    m = re.match(r"(.*) \((.*):(\d+)\)$", frame)
    if not m:
        return frame
    func, path, line = m.groups()
    for marker in ("/trimq-src/", str(ROOT) + "/", "site-packages/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = "stdlib/" + path.split("/", 1)[-1]
    return f"{path}:{line} {func}"


def self_times(raw: Path) -> tuple[Counter[str], int]:
    selfc: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        selfc[frame_key(stack.split(";")[-1])] += n
    return selfc, total


def profile(broker: Trimq, scenarios: list[int], sizes: lg.Sizes, workdir: Path) -> str:
    if not PY_SPY.exists():
        subprocess.run([str(ROOT / ".venv" / "bin" / "pip"), "install", "-q", "py-spy"], check=True)
    parts = [
        "py-spy samples the trimq process 100 times a second while the scenario runs "
        "(`py-spy record --gil --function --format raw`: only samples where a thread "
        "holds the GIL, i.e. Python CPU time; threads waiting in fsync or on locks are not "
        "counted). Top 10 functions by self time, as % of those samples; `file:line` is "
        "the line where the function starts. The profiled runs are 3x the scenario's "
        "size; py-spy slows the broker a little."
    ]
    # three times the scenario's size, for more samples
    sizes = replace(sizes, s1_messages=sizes.s1_messages * 3, s2_messages=sizes.s2_messages * 3)
    for s in scenarios:
        broker.restart()
        raw = workdir / f"profile-s{s}.txt"
        spy = subprocess.Popen(
            [
                str(PY_SPY),
                "record",
                "-p",
                str(broker.pid()),
                "-f",
                "raw",
                "--gil",
                "-F",
                "-r",
                "100",
                "-o",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        t0 = time.monotonic()
        try:
            metrics = lg.SCENARIOS[s](broker, sizes)
        except Exception as exc:
            metrics = {"error": str(exc)}  # type: ignore[dict-item]
        elapsed = time.monotonic() - t0
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
        selfc, total = self_times(raw)
        summary = ", ".join(
            f"{k} {fmt(v) if isinstance(v, float) else v}" for k, v in metrics.items()
        )
        title = (lg.SCENARIOS[s].__doc__ or "").splitlines()[0].rstrip(".")
        parts.append(
            f"\n### Scenario {s}: {title}\n\n"
            f"{summary}. {total} samples holding the GIL in {elapsed:.1f} s "
            f"(the GIL was held ≈{total / max(elapsed, 1e-9):.0f}% of the time).\n"
        )
        rows = [
            [str(i + 1), f"`{k}`", f"{100 * v / max(total, 1):.1f}%"]
            for i, (k, v) in enumerate(selfc.most_common(10))
        ]
        parts.append(markdown_table(["#", "function (file:line)", "self"], rows))
        log(f"profile s{s}: {total} samples; top: {selfc.most_common(3)}")
    return "\n".join(parts)


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--scenarios",
        default="1,2,3,4,5,6,7,8",
        help="comma-separated scenario numbers (default all)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds per broker (default 3)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--sizes", default="", help="override sizes, e.g. s1_messages=100000")
    ap.add_argument("--brokers", default="trimq,rabbitmq")
    ap.add_argument(
        "--trimq-rev",
        default="HEAD",
        help="git revision of trimq to run (default HEAD; 'worktree': the working tree as it is)",
    )
    ap.add_argument("--trimq-port", type=int, default=5811)
    ap.add_argument("--rabbitmq-port", type=int, default=5812)
    ap.add_argument(
        "--rabbitmq-node",
        default="",
        help="RabbitMQ's node name (default trimq-bench-PORT@localhost)",
    )
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/trimq-bench"))
    ap.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, profile scenarios 1 and 2 on trimq with py-spy",
    )
    ap.add_argument("--profile-scenarios", default="1,2")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = ap.parse_args(argv)

    scenarios = [int(s) for s in args.scenarios.split(",") if s.strip()]
    sizes = lg.Sizes.quick() if args.quick else lg.Sizes()
    if args.sizes:
        sizes = sizes.override(args.sizes)
    names = [b.strip() for b in args.brokers.split(",") if b.strip()]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 20000)), hard))
    args.workdir.mkdir(parents=True, exist_ok=True)

    brokers: dict[str, Broker] = {}
    if "trimq" in names:
        brokers["trimq"] = Trimq(args.trimq_port, args.workdir, args.trimq_rev)
    if "rabbitmq" in names:
        brokers["rabbitmq"] = RabbitMQ(args.rabbitmq_port, args.workdir, args.rabbitmq_node)
    results: dict[str, dict[str, list[float]]] = {b: defaultdict(list) for b in brokers}
    order: list[str] = []
    failures: list[str] = []
    t_start = time.monotonic()
    try:
        for b in brokers.values():
            log(f"starting {b.name} on port {b.port} (log {b.logfile})")
            b.start()
            b.wait_up()
        info = machine_info(brokers)
        log("machine: " + json.dumps(info))
        for r in range(args.rounds):
            for s in scenarios:
                seq = list(brokers.values())
                if (r + s) % 2:
                    seq.reverse()
                for b in seq:
                    if s in lg.FRESH_BROKER or not b.alive():
                        b.restart()
                    log(f"round {r + 1}/{args.rounds} scenario {s} on {b.name}")
                    t0 = time.monotonic()
                    try:
                        metrics = lg.SCENARIOS[s](b, sizes)
                    except Exception as exc:
                        alive = b.alive()
                        msg = f"round {r + 1}, scenario {s}, {b.name}: {type(exc).__name__}: {exc}"
                        if not isinstance(exc, (lg.ScenarioError, ac.BrokerError)):
                            msg += "\n" + traceback.format_exc(limit=6)
                        if not alive:
                            msg += (
                                f"\n  broker exited with code {b.proc.returncode}"  # type: ignore[union-attr]
                                f"; log tail:\n{b.log_tail()}"
                            )
                        log("FAILED " + msg)
                        failures.append(msg)
                        metrics = {}
                    for k, v in metrics.items():
                        if k not in order:
                            order.append(k)
                        results[b.name][k].append(v)
                    if metrics:
                        log(
                            f"  {time.monotonic() - t0:.1f} s: "
                            + ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
                        )
                    try:
                        if s in lg.WIPE_AFTER:
                            b.reset()
                        elif not metrics:
                            b.restart()
                    except Exception as exc2:
                        failures.append(f"  restart of {b.name} failed: {exc2}")
        bnames = list(brokers)
        header = ["metric"] + bnames + (["trimq/RabbitMQ"] if len(bnames) == 2 else [])
        header.append("better")
        rows = table(results, order, bnames)
        if args.rounds and scenarios:
            print()
            print(text_table(header, rows))
            for f in failures:
                print("FAILURE:", f)
        profile_text = ""
        if args.profile and "trimq" in brokers:
            ps = [int(s) for s in args.profile_scenarios.split(",") if s.strip()]
            profile_text = profile(brokers["trimq"], ps, sizes, args.workdir)  # type: ignore[arg-type]
        if not args.no_write:
            cmd = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
            if args.rounds and scenarios:
                minutes = (time.monotonic() - t_start) / 60
                body = [
                    f"## Latest run: {info['date']}",
                    "",
                    f"Command: `{cmd.strip()}` ({minutes:.0f} min)  ",
                    f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram']} RAM, "
                    f"Linux {info['kernel']}; load average at the start "
                    f"{info['loadavg']}  ",
                    f"Versions: Python {info['python']}, trio {info['trio']}, "
                    f"trimq {info['trimq']}, RabbitMQ {info['rabbitmq']}, "
                    f"Erlang {info['erlang']}  ",
                    f"Rounds: {args.rounds}, brokers alternating; medians. Sizes: "
                    f"{'quick' if args.quick else 'full'}"
                    + (f" with {args.sizes}" if args.sizes else "")
                    + ".",
                    "",
                    markdown_table(header, rows),
                    "",
                ]
                if failures:
                    body += ["Failures in this run:", ""]
                    body += ["```", *failures, "```", ""]
                body += ["<details><summary>Every round</summary>", "", "```"]
                for bname in bnames:
                    for m in order:
                        body.append(
                            f"{bname:9} {m}: "
                            + ", ".join(fmt(v) for v in results[bname].get(m, []))
                        )
                body += ["```", "</details>"]
                update_results("results", "\n".join(body))
                if len(bnames) == 2 and not args.quick and len(scenarios) == len(lg.SCENARIOS):
                    update_readme(
                        "\n".join(
                            [
                                f"Latest complete run ({info['date']}, {info['nproc']} CPUs, "
                                f"RabbitMQ {info['rabbitmq']}, trimq {info['trimq']}; medians of "
                                f"{args.rounds} rounds; details in bench/RESULTS.md):",
                                "",
                                markdown_table(header, rows),
                            ]
                        )
                    )
            if profile_text:
                update_results("profiles", "## Profiles\n\n" + profile_text)
            log(f"updated {RESULTS}")
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        for b in brokers.values():
            if b.alive():
                log(f"stopping {b.name}")
                b.stop("clean")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
