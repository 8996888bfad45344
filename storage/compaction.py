"""Compaction: drop dead records from sealed segments, so the log stays near the size of what
it still holds.

A record is kept while replay needs it, judged in LSN order against the final state and
against the records that stay present before it (a segment kept as it is keeps its dead
records too, and those must stay neutralised):
- a MESSAGE while some queue holds the message;
- a SETTLE or DELIVER while a message it names is live, or present though dead;
- the DEFINE that created a live definition (its place in the order) and the one that set its
  current value;
- a deletion while a present record before it would otherwise come back: a DEFINE of that key
  (or of that vhost), or a MESSAGE naming that queue (or a queue of that vhost).
Liveness only ever goes from live to dead (message ids are never reused), so a record judged
dead at LSN L stays dead however the log continues.

Only segments that a checkpoint covers are compacted, and older checkpoints are removed first:
replay from the checkpoint never looks at them, and full replay (if the checkpoint is lost)
gives the same state from the records kept. A sealed segment with nothing live is deleted when
only deleted segments precede it; elsewhere a run of such segments becomes one empty segment
whose header keeps the run's LSN span on record, so that a missing segment is never mistaken
for a compacted one. A segment whose live bytes fall under half is rewritten (temp file,
fsync, rename over, fsync the directory); the active segment is never touched. Segments are
handled oldest first, so a crash leaves compacted segments followed by untouched ones: only
records judged unneeded given what precedes them are gone, which replays to the same state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.checkpoint import remove_older_checkpoints
from storage.errors import CorruptWAL
from storage.format import SEGMENT_HEADER_SIZE, SegmentHeader, rewritten_header
from storage.fsutil import fsync_dir, replace_file
from storage.records import RECORD_TYPES, Key, QueueKey, record_kind
from storage.recovery import Progress
from storage.replay import DefKey, ReplayState, vhost_scoped
from storage.segment import SegmentReader, read_segment

# Rewrite a segment when less than this share of its record bytes is live (as NATS does).
REWRITE_BELOW = 0.5

KEEP = "keep"
REWRITE = "rewrite"
DELETE = "delete"


class Liveness:
    """Judges records in LSN order: is_live() says whether replay needs a record given the
    records marked present() before it. Each type's rule is its entry in
    records.RECORD_KINDS; this holds what they share."""

    def __init__(self, final: ReplayState) -> None:
        self.final = final
        # Present DEFINEs (by key), and queues named by present MESSAGEs, since the last
        # present deletion that clears them.
        self.defined: set[DefKey] = set()
        self.named: set[QueueKey] = set()
        self.dead_ids: set[int] = set()  # dead messages whose MESSAGE record is present

    def is_live(self, lsn: int, rtype: int, payload: dict[str, Any]) -> bool:
        """ValueError for a type this version does not know (never judged as another)."""
        return record_kind(rtype).is_live(self, lsn, payload)

    def present(self, lsn: int, rtype: int, payload: dict[str, Any]) -> None:
        """Note that this record stays in the log."""
        record_kind(rtype).present(self, lsn, payload)

    def cleared_by(self, kind: str, key: Key) -> tuple[list[DefKey], list[QueueKey]]:
        """The present definitions and queues a deletion of (kind, key) would clear."""
        if kind == "vhost":
            vhost = key[0]
            return (
                [k for k in self.defined if vhost_scoped(k[0], k[1], vhost)],
                [q for q in self.named if q[0] == vhost],
            )
        defs = [(kind, key)] if (kind, key) in self.defined else []
        if kind == "queue" and len(key) == 2 and (key[0], key[1]) in self.named:
            return defs, [(key[0], key[1])]
        return defs, []


@dataclass
class SegmentPlan:
    """What compaction will do with one sealed segment."""

    base: int
    path: Path
    size: int
    header: SegmentHeader
    keep: list[tuple[int, int]]  # (offset, size) of each record kept
    records: int
    live_bytes: int
    action: str
    end_lsn: int  # the last LSN its span covers: one below the next segment's base

    @property
    def dead_bytes(self) -> int:
        return self.size - SEGMENT_HEADER_SIZE - self.live_bytes


@dataclass
class CompactionResult:
    checkpoint_lsn: int = 0
    examined: int = 0  # segments a checkpoint covered
    deleted: list[str] = field(default_factory=list)
    rewritten: dict[str, int] = field(default_factory=dict)  # name -> new size
    bytes_before: int = 0
    bytes_after: int = 0
    records_dropped: int = 0


def covered_segments(segments: list[tuple[int, Path]], bound: int) -> list[tuple[int, Path]]:
    """The sealed segments (not the last, active one) whose records are all <= bound."""
    out = []
    for i in range(len(segments) - 1):
        if segments[i + 1][0] > bound + 1:
            break
        out.append(segments[i])
    return out


def plan_compaction(
    segments: list[tuple[int, Path]],
    final: ReplayState,
    bound: int,
    progress: Progress | None = None,
) -> list[SegmentPlan]:
    """Read every covered segment and decide. Nothing is changed; raises CorruptWAL first if
    any of them is damaged."""
    covered = covered_segments(segments, bound)
    total = sum(p.stat().st_size for _, p in covered)
    liveness = Liveness(final)
    plans: list[SegmentPlan] = []
    done = records_done = 0
    for i, (base, path) in enumerate(covered):
        data = read_segment(path)
        reader = SegmentReader(path, data, base, below_lsn=segments[i + 1][0])
        records = list(reader.records(stop_at_damage=True))
        damage = reader.first_damage()
        if damage is not None:
            raise CorruptWAL(path, damage.offset, damage.reason)
        assert reader.header is not None
        # The action follows from the bytes live on their own (deletions are small and
        # decided below, once it is known which records before them stay).
        live = 0
        for off, size, lsn, rtype, payload in records:
            if rtype not in RECORD_TYPES:  # never judged as a DEFINE: refused, kept as it is
                raise CorruptWAL(path, off, f"LSN {lsn}: unknown record type {rtype}")
            if not record_kind(rtype).deletion(payload) and liveness.is_live(lsn, rtype, payload):
                live += size
        action = REWRITE if live < (len(data) - SEGMENT_HEADER_SIZE) * REWRITE_BELOW else KEEP
        keep = []
        for off, size, lsn, rtype, payload in records:
            if action == KEEP or liveness.is_live(lsn, rtype, payload):
                keep.append((off, size))
                liveness.present(lsn, rtype, payload)
        plans.append(
            SegmentPlan(
                base,
                path,
                len(data),
                reader.header,
                keep,
                len(records),
                sum(size for _, size in keep),
                action,
                segments[i + 1][0] - 1,
            )
        )
        done += len(data)
        records_done += len(records)
        if progress is not None:
            progress(records_done, done, total)
    _place_empty_segments(plans)
    return plans


def _place_empty_segments(plans: list[SegmentPlan]) -> None:
    """Decide what becomes of segments that keep nothing. At the head of the log they are
    deleted. Elsewhere a run of them shrinks to one empty rewritten segment whose header
    spans the whole run (written first), so the LSNs they covered are accounted for; the
    rest of the run is then deleted."""
    at_head = True
    anchor: SegmentPlan | None = None
    for plan in plans:
        if plan.keep:
            at_head = False
            anchor = None
        elif at_head:
            plan.action = DELETE
        elif anchor is not None:
            anchor.end_lsn = plan.end_lsn
            anchor.action = REWRITE
            plan.action = DELETE
        else:
            unchanged = (
                plan.records == 0 and plan.header.rewritten and plan.header.end_lsn == plan.end_lsn
            )
            plan.action = KEEP if unchanged else REWRITE
            anchor = plan


def apply_plans(plans: list[SegmentPlan], fsync: bool, result: CompactionResult) -> None:
    """Delete or rewrite, oldest first, each step durable before the next begins."""
    for plan in plans:
        result.bytes_before += plan.size
        if plan.action == DELETE:
            # os.unlink, not Path.unlink: the module's `os` is the seam where tests inject faults
            os.unlink(plan.path)  # noqa: PTH108
            if fsync:
                fsync_dir(plan.path.parent)
            result.deleted.append(plan.path.name)
            result.records_dropped += plan.records
            continue
        if plan.action == REWRITE:
            data = read_segment(plan.path) if plan.keep else b""
            kept = [data[off : off + size] for off, size in plan.keep]
            header = rewritten_header(
                plan.base, plan.header.next_message_id, plan.end_lsn, sum(len(k) for k in kept)
            )
            chunks = [header.encode(), *kept]
            replace_file(plan.path, chunks, fsync)
            new_size = sum(len(c) for c in chunks)
            result.rewritten[plan.path.name] = new_size
            result.records_dropped += plan.records - len(plan.keep)
            result.bytes_after += new_size
            continue
        result.bytes_after += plan.size


def compact(
    wal_dir: Path,
    segments: list[tuple[int, Path]],
    final: ReplayState,
    bound: int,
    fsync: bool,
    progress: Progress | None = None,
    result: CompactionResult | None = None,
) -> CompactionResult:
    """Compact the segments covered by the checkpoint at `bound`, which must exist already;
    `final` is the replay state at `bound` or later, `segments` every segment oldest first.

    Each step is recorded in `result` as it completes, so that when one fails (OSError, or
    CorruptWAL before any change) the caller still knows which files are gone or new; what
    is on disk then is what a crash at that step leaves, which replays to the same state."""
    if result is None:
        result = CompactionResult()
    result.checkpoint_lsn = bound
    if bound <= 0:
        return result
    plans = plan_compaction(segments, final, bound, progress)
    result.examined = len(plans)
    remove_older_checkpoints(wal_dir, bound, fsync)
    apply_plans(plans, fsync, result)
    return result
