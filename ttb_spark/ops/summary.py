"""What a job run ended with (:class:`RunResult`) and the end-of-run summary told from it: as data for
``--json``, and as the one screen a run prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ttb_spark.ops.jobs import BACKFILL, JOBS, ONE_PASS
from ttb_spark.settings import Settings


@dataclass
class RunResult:
    """What a job run did: its audit record and exit status."""

    record: Any  # audit.RunRecord
    exit_code: int
    tables: list[str] = field(default_factory=list)
    rejected_pages: int | None = None  # pages of the range in silver.rejects (None: the job has no silver stage)
    rejected_of: str = ""  # what rejected_pages counts: the range, or this run's changed pages
    audit_error: str | None = None  # the first failure to read or write the run's ops.pipeline_runs row
    report: str | None = None  # where the run wrote its report (ttb_spark.report), or why it did not
    watch: dict[str, Any] | None = None  # the watchlist's counts (ttb_spark.watch), or its error


def fetch_counts(counts: dict[str, Any]) -> dict[str, int]:
    """The counts of the stage that fetched pages, the walk's (``scrape``) or discovery's; {} for neither."""
    return counts.get("scrape") or counts.get("discover") or {}


def fetch_cost(counts: dict[str, Any]) -> str:
    """Pages a run's walk or discovery stored so far and the registry requests per page it paid, then the label
    images it stored and the requests per image ("" for a job that fetches nothing)."""
    fetched = fetch_counts(counts)
    if not fetched:
        return ""
    spent = fetched.get("image_requests", 0)
    pages, requests = fetched.get("found", 0) + fetched.get("pages_found", 0), fetched.get("requests", 0) - spent
    cost = f"{pages:,} pages stored, {requests / pages:.2f} requests per page" if pages else f"no page stored, {requests:,} requests"
    if "image_requests" not in fetched:
        return cost
    shots = fetched.get("images_found", 0)
    return cost + (f"; {shots:,} label images stored, {spent / shots:.2f} requests per image" if shots else f"; no label image stored, {spent:,} requests")


def summary_fields(job: str, result: RunResult, settings: Settings) -> dict[str, Any]:
    """What the end-of-run report says, as data (``--json`` prints it): status, range, counts per stage, what
    gold recorded, rejects, error, where the raw store, the tables and the audit row are."""
    from ttb_spark import lakehouse
    from ttb_spark.ops import audit

    r = result.record
    root = settings.pipeline.lakehouse_root
    where = f"{root.removeprefix(lakehouse.CATALOG_SCHEME)}<layer>.<table>" if lakehouse.is_catalog(root) else f"{root}/<layer>/<table>"
    return {
        "job": job, "status": r.status, "run_id": r.run_id, "seconds": round(r.duration_seconds or 0, 1),
        "range": {"start": r.range_start and r.range_start.isoformat(), "end": r.range_end and r.range_end.isoformat(),
                  "chunk_days": None if job in ONE_PASS else settings.pipeline.backfill_chunk_days, "chunks": r.chunks_total,
                  "finished": len(r.completed_chunks), "skipped": r.chunks_skipped, "partitions": list(r.partitions),
                  "listed_through": r.covered_through.isoformat() if job in BACKFILL and r.covered_through else None},
        "fetched": fetch_cost(r.counts) or None,
        "stages": {stage: r.counts.get(stage) for stage in JOBS[job]},
        "changes": {kind: {"total": (r.counts.get("changes") or {}).get(kind, len(ids)), "ids": ids} for kind, ids in r.changes.items()},
        "rejects": None if result.rejected_pages is None else {"pages": result.rejected_pages, "of": result.rejected_of},
        "error": r.error.splitlines()[0] if r.error else None,
        "audit_error": result.audit_error,
        "report": result.report,
        "watch": result.watch,
        "raw": settings.pipeline.raw_root,
        "tables": {"where": where, "names": list(result.tables)},
        "audit": {"table": lakehouse.location(audit.PIPELINE_RUNS, root), "run_id": r.run_id},
    }


def summary(fields: dict[str, Any]) -> str:
    """The one-screen end-of-run report of :func:`summary_fields`."""
    span = fields["range"]
    lines = [
        f"ttb_spark {fields['job']}: {fields['status'].upper()} in {fields['seconds']:.1f}s  (run {fields['run_id']})",
        f"  range     {span['start']}..{span['end']}"
        + (f" received, completed dates listed through {span['listed_through']}" if span["listed_through"] else "")
        + f"  {span['chunks']} chunk(s)"
        + (f" of <= {span['chunk_days']} days" if span["chunk_days"] else "")
        + f", {span['finished']} finished, {span['skipped']} skipped as already done"
        + (f"  partition {', '.join(span['partitions'])}" if span["partitions"] else ""),
    ]
    for stage, counts in fields["stages"].items():
        shown = " ".join(f"{k}={v}" for k, v in counts.items()) if counts else "(not run)"
        lines.append(f"  {stage:<9} {shown}")
    if fields["fetched"]:
        lines.append(f"  fetched   {fields['fetched']}")
    for kind, change in fields["changes"].items():
        more = f" (+{change['total'] - len(change['ids'])} more)" if change["total"] > len(change["ids"]) else ""
        lines.append(f"  {kind:<9} {change['total']}: {' '.join(change['ids'])}{more}")
    if fields["rejects"] is not None:
        lines.append(f"  rejects   {fields['rejects']['pages']} page(s) of {fields['rejects']['of']} quarantined in silver.rejects")
    if fields["error"]:
        lines.append(f"  error     {fields['error'][:200]}")
    if fields["audit_error"]:
        lines.append(f"  audit     NOT RECORDED: {fields['audit_error'][:300]}")
    if fields["watch"]:
        lines.append(f"  watch     {' '.join(f'{k}={v}' for k, v in fields['watch'].items())}")
    if fields["report"]:
        lines.append(f"  report    {fields['report']}")
    lines.append(f"  raw       {fields['raw']}")
    lines.append(f"  tables    {fields['tables']['where']}: {', '.join(fields['tables']['names']) or '(none yet)'}")
    lines.append(f"  audit     {fields['audit']['table']} (run_id = '{fields['audit']['run_id']}')")
    return "\n".join(lines) + "\n"
