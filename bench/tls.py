"""TLS against plain AMQP, trimq and RabbitMQ side by side: scenarios 1 (transient, end to
end), 2 (persistent with confirms) and 6 (connection opens) of loadgen.py over amqp:// and
amqps:// URLs of brokers that are already running (their pids from pid files).

    .venv/bin/python bench/tls.py \\
        --broker trimq,amqp://127.0.0.1:5672/%2F,amqps://127.0.0.1:5671/%2F,DATA/trimq.pid \\
        --broker rabbitmq,amqp://127.0.0.1:5673/%2F,amqps://127.0.0.1:5674/%2F,RMQ/pid \\
        --rounds 3 --sizes s1_messages=100000,s2_messages=30000,s6_connections=500

Each round runs every broker and URL one after the other, alternating the order; the median
of the rounds is printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path

import loadgen  # bench/ is the script's directory, so on sys.path


@dataclass
class Running:
    """A broker started elsewhere: scenarios 1, 2 and 6 need only its URL and pid."""

    name: str
    url: str
    pid_file: Path

    def pid(self) -> int:
        return int(self.pid_file.read_text().split()[0])

    def stop(self, mode: str) -> float:
        raise NotImplementedError("bench/tls.py does not restart brokers")

    def start(self) -> float:
        raise NotImplementedError("bench/tls.py does not restart brokers")


METRICS = (
    "s1 transient 16 B e2e msg/s",
    "s2 persistent+confirms e2e msg/s",
    "s2 confirmed msg/s",
    "s6 open conn/s",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", action="append", required=True, help="NAME,AMQP,AMQPS,PIDFILE")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="")
    args = parser.parse_args()
    sizes = loadgen.Sizes()
    if args.sizes:
        sizes = sizes.override(args.sizes)
    targets = []
    for text in args.broker:
        name, plain, tls, pid_file = text.split(",")
        targets.append(Running(f"{name} amqp", plain, Path(pid_file)))
        targets.append(Running(f"{name} amqps", tls, Path(pid_file)))
    results: dict[str, dict[str, list[float]]] = {t.name: {} for t in targets}
    for round_ in range(args.rounds):
        order = targets if round_ % 2 == 0 else list(reversed(targets))
        for target in order:
            for scenario in (loadgen.s1_transient, loadgen.s2_persistent):
                for key, value in scenario(target, sizes).items():
                    results[target.name].setdefault(key, []).append(value)
            for key, value in loadgen.s6_idle_connections(target, sizes).items():
                results[target.name].setdefault(key, []).append(value)
            print(f"round {round_ + 1}: {target.name} done", flush=True)
    print("| metric | " + " | ".join(t.name for t in targets) + " |")
    print("|---|" + "---:|" * len(targets))
    for metric in METRICS:
        cells = [f"{statistics.median(results[t.name][metric]):,.0f}" for t in targets]
        print(f"| {metric} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
