"""trimq-wal: inspect, verify, compact and repair the write-ahead log of a data directory that
no broker is running on. Only argument parsing and printing live here.

Exit status: 0 fine, 1 corrupt (or repair/compaction refused by damage), 2 cannot run (the
directory is locked by a running broker, missing, or the arguments are wrong).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from storage.errors import CorruptWAL, StorageError, WALLocked
from storage.fsutil import PRIVATE_UMASK
from storage.inspect import InspectReport, inspect_directory, repair_directory, verify_directory
from storage.wal import compact_directory

EXIT_OK = 0
EXIT_CORRUPT = 1
EXIT_UNUSABLE = 2


class ProgressBar:
    """A progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._last = 0.0
        self._drawn = False

    def __call__(self, records: int, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        share = done / total if total else 1.0
        width = 30
        filled = int(share * width)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{share:4.0%} {done / 2**20:.1f}/{total / 2**20:.1f} MiB "
            f"{records} records"
        )
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _print_inspect(report: InspectReport, out: TextIO) -> None:
    n_records = sum(s.records for s in report.segments)
    out.write(
        f"WAL {report.directory}/wal: {len(report.segments)} segments, {n_records} "
        f"records, {report.live_messages} live messages, {report.definitions} "
        "definitions\n"
    )
    out.write(f"{'segment':<26} {'size':>10} {'records':>8} {'live':>10} {'dead':>10}  status\n")
    for s in report.segments:
        if s.corrupt:
            status = "CORRUPT"
        elif s.damage:
            status = "torn tail"
        else:
            status = "ok"
        flags = []
        if s.newest:
            flags.append("active")
        if s.rewritten:
            flags.append("rewritten")
        if not s.header_ok:
            flags.append("bad header")
        if flags:
            status += f" ({', '.join(flags)})"
        out.write(
            f"{s.name:<26} {s.size:>10} {s.records:>8} {s.live_bytes:>10} "
            f"{s.dead_bytes:>10}  {status}\n"
        )
        if s.records:
            kinds = " ".join(f"{k}={v}" for k, v in sorted(s.by_type.items()))
            batches = f" in {s.batches} batches" if s.batches else ""
            out.write(f"    LSN {s.first_lsn}..{s.last_lsn}{batches}: {kinds}\n")
        if s.damage:
            out.write(
                f"    CRC errors: {s.crc_errors}, invalid bytes at end: {s.invalid_bytes_at_end}\n"
            )
        if s.torn_tail_offset is not None:
            out.write(
                f"    torn tail from offset {s.torn_tail_offset} "
                f"({s.size - s.torn_tail_offset} bytes, at least {s.torn_tail_records} "
                "records, never confirmed): cut at startup\n"
            )
        for d in s.damage:
            out.write(
                f"    damage at offset {d.offset}, {d.length} bytes: {d.reason}"
                f"{' (in the torn tail)' if d.torn_tail else ''}\n"
            )
    for c in report.checkpoints:
        out.write(f"{c.name}: {'valid' if c.valid else 'INVALID: ' + c.detail}\n")
    if report.records is not None:
        out.write(
            f"\n{'lsn':>10} {'type':<8} {'size':>8} {'position':<34} {'crc':<4} "
            f"{'live':<5} subject / message ids\n"
        )
        for r in report.records:
            lsn = "-" if r.lsn is None else str(r.lsn)
            live = "-" if r.live is None else ("yes" if r.live else "no")
            about = r.subject or ""
            if r.message_ids:
                about += f" ids={','.join(map(str, r.message_ids))}"
            if r.problem:
                about += f" [{r.problem}]"
            out.write(
                f"{lsn:>10} {r.type:<8} {r.size:>8} {r.segment + ':' + str(r.offset):<34} "
                f"{r.crc:<4} {live:<5} {about}\n"
            )
    problems = report.problems()
    if report.corrupt:
        out.write(
            "\nCORRUPT: the broker will refuse to start until this is repaired "
            f"(`trimq-wal repair {report.directory}` sets the damage aside):\n"
        )
    elif problems:
        out.write("\nno corruption; note:\n")
    for line in problems:
        out.write(f"  {line}\n")


def _cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    bar = ProgressBar("inspect")
    try:
        report = inspect_directory(args.dir, records=args.records, progress=bar)
    finally:
        bar.finish()
    if args.json:
        json.dump(report.to_json(), out, indent=2, default=str)
        out.write("\n")
    else:
        _print_inspect(report, out)
    return EXIT_CORRUPT if report.corrupt else EXIT_OK


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    report = verify_directory(args.dir)
    n_records = sum(s.records for s in report.segments)
    for line in report.problems():
        out.write(f"{line}\n")
    if report.corrupt:
        out.write(
            f"CORRUPT: {args.dir}/wal ({len(report.segments)} segments, {n_records} records)\n"
        )
        return EXIT_CORRUPT
    out.write(f"OK: {args.dir}/wal ({len(report.segments)} segments, {n_records} records)\n")
    return EXIT_OK


def _cmd_compact(args: argparse.Namespace, out: TextIO) -> int:
    opening = ProgressBar("recover")
    bar = ProgressBar("compact")
    try:
        try:
            result = compact_directory(args.dir, progress=bar, open_progress=opening)
        finally:
            opening.finish()
            bar.finish()
    except CorruptWAL as exc:
        out.write(f"{exc}\n")
        return EXIT_CORRUPT
    out.write(
        f"checkpoint at LSN {result.checkpoint_lsn}; {result.examined} sealed segments "
        f"covered; {len(result.deleted)} deleted, {len(result.rewritten)} rewritten; "
        f"{result.records_dropped} records dropped; "
        f"{result.bytes_before} -> {result.bytes_after} bytes\n"
    )
    for name in result.deleted:
        out.write(f"  deleted   {name}\n")
    for name, size in result.rewritten.items():
        out.write(f"  rewritten {name} ({size} bytes)\n")
    return EXIT_OK


def _cmd_repair(args: argparse.Namespace, out: TextIO) -> int:
    report = repair_directory(args.dir, dry_run=args.dry_run)
    if args.json:
        json.dump(report.to_json(), out, indent=2)
        out.write("\n")
        return EXIT_OK
    verb = "would set aside" if args.dry_run else "set aside"
    for item in report.items:
        claim = f" (claims LSN {item.lsn}, {item.type})" if item.lsn is not None else ""
        where = f" -> {item.quarantine_file}" if item.quarantine_file else ""
        out.write(
            f"{verb}: {item.segment} offset {item.offset}, {item.length} bytes: "
            f"{item.reason}{claim}{where}\n"
        )
    for name in report.checkpoints_quarantined:
        out.write(f"{verb}: invalid checkpoint {name}\n")
    for name in report.segments_truncated:
        out.write(f"truncated {name}\n")
    for name in report.segments_rewritten:
        out.write(f"rewrote {name} without the damaged bytes\n")
    if not report.changed:
        out.write("nothing to repair\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trimq-wal",
        description="Inspect and maintain the write-ahead log in DIR/wal "
        "(DIR: the broker's data directory). Refuses a directory a broker holds.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="per segment: records by type, live/dead bytes, damage")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--records", action="store_true", help="list every record")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_inspect)
    p = sub.add_parser("verify", help="check CRCs and LSN continuity; exit 1 if corrupt")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.set_defaults(func=_cmd_verify)
    p = sub.add_parser("compact", help="drop dead records from sealed segments")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.set_defaults(func=_cmd_compact)
    p = sub.add_parser("repair", help="move damaged records to DIR/wal/quarantine/")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--dry-run", action="store_true", help="only say what would be set aside")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_repair)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    args = build_parser().parse_args(argv)
    # Quarantine files, rewritten segments, checkpoints: the owner's only, whatever the umask
    # (restored on the way out, for callers that run this in their own process).
    umask = os.umask(PRIVATE_UMASK)
    try:
        return int(args.func(args, out))
    except BrokenPipeError:  # `trimq-wal inspect DIR --records | head`
        sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - keep Python quiet at exit
        return EXIT_OK
    except WALLocked as exc:
        sys.stderr.write(f"trimq-wal: {exc}\n")
        return EXIT_UNUSABLE
    except StorageError as exc:
        sys.stderr.write(f"trimq-wal: {exc}\n")
        return EXIT_CORRUPT if isinstance(exc, CorruptWAL) else EXIT_UNUSABLE
    finally:
        os.umask(umask)


if __name__ == "__main__":
    sys.exit(main())
