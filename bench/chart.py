"""Draw the scaling chart (PNG) from bench/scaling.py's JSON, and nothing else.

    .venv/bin/python bench/chart.py                                  # results/scaling.json
    .venv/bin/python bench/chart.py results/scaling-X.json -o out.png

Two panels: deliveries/s against the number of queues and against the number of connections,
log x axis, one line per broker through the medians, the min-max range of the runs as error
bars; prints the same figures as a Markdown table. Needs matplotlib (`pip install -e .[bench]`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
LABELS = {"trimq": "trimq", "rabbitmq": "RabbitMQ 3.10"}
TITLES = {
    "queues": "1 publisher over N queues, a consumer on each",
    "connections": "N connections, each publishing and consuming its own queue",
}


def draw(doc: dict[str, Any], out: Path) -> None:
    dims = list(doc["series"])
    fig, axes = plt.subplots(1, len(dims), figsize=(6 * len(dims), 4.5), squeeze=False)
    for ax, d in zip(axes[0], dims, strict=True):
        for name, per in doc["series"][d].items():
            pts = sorted((int(n), s) for n, s in per.items() if s["median"] is not None)
            if not pts:
                continue
            xs = [n for n, _ in pts]
            med = [s["median"] for _, s in pts]
            lo = [s["median"] - s["min"] for _, s in pts]
            hi = [s["max"] - s["median"] for _, s in pts]
            ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=LABELS.get(name, name))
        ax.set_xscale("log")
        ax.set_xticks(xs_all := sorted({int(n) for per in doc["series"][d].values() for n in per}))
        ax.set_xticklabels([f"{n:,}" for n in xs_all])
        ax.set_xlabel(f"number of {d}")
        ax.set_ylabel(doc.get("unit", "deliveries/s"))
        ax.set_title(TITLES.get(d, d), fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    machine = doc.get("machine", {})
    fig.suptitle(
        f"Throughput against scale, {doc['date'][:10]}, {machine.get('nproc', '?')} CPUs, "
        f"load average at the start {machine.get('loadavg', '?')}\n"
        f"medians of {doc['rounds']} runs (bars: min-max); {doc['messages_per_point']:,} "
        f"{doc['body_bytes']}-byte transient messages per point",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def markdown(doc: dict[str, Any]) -> str:
    """The medians (min-max) as a Markdown table, with the first broker's / the second's."""
    names = doc["brokers"]
    header = ["series", "N", *(f"{LABELS.get(b, b)} median (min-max)" for b in names)]
    if len(names) == 2:
        header.append(f"{names[0]}/{names[1]}")
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for d, by in doc["series"].items():
        for n in sorted(by[names[0]], key=int):
            cells = [d, f"{int(n):,}"]
            meds = []
            for b in names:
                s = by[b][n]
                meds.append(s["median"])
                cells.append(
                    "—"
                    if s["median"] is None
                    else f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"
                )
            if len(names) == 2:
                ok = None not in meds and meds[1]
                cells.append(f"{meds[0] / meds[1]:.2f}" if ok else "—")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("json", nargs="?", type=Path, default=HERE / "results" / "scaling.json")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "scaling.png")
    args = ap.parse_args(argv)
    doc = json.loads(args.json.read_text())
    if doc.get("kind") != "scaling":
        ap.error(f"{args.json} is not bench/scaling.py output")
    draw(doc, args.output)
    print(markdown(doc))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
