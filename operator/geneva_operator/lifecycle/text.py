"""What the lifecycle writes for humans and for Ray: times, submission ids, the failure line,
the log tail, and progress as the status shows it. Pure functions."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Optional

from ..api.job_contract import ProgressReport, ResultReport
from ..api.models import Progress

LOG_TAIL_LINES = 30
LOG_TAIL_BYTES = 4096


def utcnow() -> datetime:
    """The clock, for the handlers (decide itself never reads it)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def format_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: Optional[str]) -> Optional[datetime]:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def later_than(now: datetime, previous: Optional[str]) -> str:
    """A run start strictly after the previous one: run starts key submission ids."""
    prev = parse_time(previous)
    if prev is not None and now <= prev:
        now = prev + timedelta(seconds=1)
    return format_time(now)


def submission_id(uid: str, run_start: str, attempt: int) -> str:
    """Deterministic and unique per (resource, run, attempt): see the package docstring."""
    stamp = format_time(parse_time(run_start)).replace("-", "").replace(":", "").lower()[:-1]
    return f"geneva-{uid[:8]}-{stamp}-{attempt}"


# Ray echoes the entrypoint, whose argument is the whole spec in base64: kilobytes that say
# nothing to a reader of the status (the spec is on the resource itself).
_ENTRYPOINT_SPEC = re.compile(r"(-m [\w.]+ )[A-Za-z0-9_-]{64,}")
# Ray's message for a failed entrypoint repeats the log, which status.logTail already holds.
_RAY_LOG_ECHO = ", last available logs"
# The engine's one-line report of why it stopped, and Python's last exception line.
_ERROR_LINE = re.compile(r"^(?:error: .+|[A-Z]\w*(?:Error|Exception): .+)$")


def failure_summary(message: str, log_tail: Optional[str]) -> str:
    """Ray's reason without its copy of the log, plus the line of the log that says what failed."""
    head = (message or "").split(_RAY_LOG_ECHO, 1)[0].strip()
    lines = [ln.strip() for ln in (log_tail or message or "").splitlines()]
    error = next((ln for ln in reversed(lines) if _ERROR_LINE.match(ln)), "")
    return ": ".join(part for part in (head, _ENTRYPOINT_SPEC.sub(r"\1<spec>", error)) if part)


def bound_log_tail(text: Optional[str], lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_BYTES) -> Optional[str]:
    """The last `lines` lines, at most `max_bytes` UTF-8 bytes (cut at a line start if possible)."""
    if not text:
        return None
    text = _ENTRYPOINT_SPEC.sub(r"\1<spec>", text)
    tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    raw = tail.encode()
    if len(raw) > max_bytes:
        raw = raw[-max_bytes:]
        cut = raw.find(b"\n")
        raw = raw[cut + 1:] if 0 <= cut < len(raw) - 1 else raw
        tail = raw.decode(errors="ignore")
    return tail


def human_count(n: int) -> str:
    for unit, size in (("B", 1_000_000_000), ("M", 1_000_000), ("K", 1_000)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def rows_column(p: Progress) -> str:
    return f"{human_count(p.rows_done)}/{human_count(p.rows_total)}"


def progress_from(report: ProgressReport, previous: Optional[Progress], now: datetime) -> Progress:
    """Status progress from the job's newest report (see api.job_contract)."""
    done, total = report.rows_done, report.rows_total
    frag_done, frag_total = report.fragments_done, report.fragments_total
    if total > 0:
        percent = min(100, done * 100 // total)
    elif frag_total > 0:
        percent = min(100, frag_done * 100 // frag_total)
    else:
        percent = 100 if isinstance(report, ResultReport) and report.committed_version is not None else 0
    committed = report.fragments_committed, report.rows_committed
    unchanged = previous is not None and (previous.rows_done, previous.fragments_done) == (done, frag_done) \
        and (previous.fragments_committed, previous.rows_committed) == committed
    if unchanged and previous.rows_total == total and previous.fragments_total == frag_total:
        return previous  # nothing new: keep updatedAt (and avoid a status patch)
    rate = report.rows_per_second
    if rate is None and previous is not None and previous.updated_at and done > previous.rows_done:
        elapsed = (now - parse_time(previous.updated_at)).total_seconds()
        rate = (done - previous.rows_done) / elapsed if elapsed > 0 else None
    rate = round(float(rate), 1) if rate is not None else None
    eta = int((total - done) / rate) if rate and total > done else (0 if total and done >= total else None)
    return Progress(
        fragments_done=frag_done,
        fragments_total=frag_total,
        rows_done=done,
        rows_total=total,
        percent=percent,
        rows_per_second=rate,
        eta_seconds=eta,
        updated_at=format_time(now),
        fragments_committed=committed[0],
        rows_committed=committed[1],
    )
