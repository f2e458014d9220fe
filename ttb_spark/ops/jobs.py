"""The jobs (the command line's job commands) and the stages each runs, in order, with the stage facts the
runner plans by: where a stage's module lives, which stages need the registry, which follow watermarks,
which have no range and which run one at a time."""

from __future__ import annotations

JOBS: dict[str, tuple[str, ...]] = {
    "pipeline": ("discover", "bronze", "silver", "gold"),
    "walk": ("scrape", "bronze", "silver", "gold"),  # also ``pipeline --walk``
    "raw": ("scrape", "bronze"),
    "analytics": ("silver", "gold"),
    "scrape": ("scrape",),
    "bronze": ("bronze",),
    "silver": ("silver",),
    "gold": ("gold",),
    "reference": ("reference",),
    "discover": ("discover",),
    "daily": ("discover", "bronze", "silver", "gold"),
    "reconcile": ("reconcile", "bronze"),
    "images": ("images", "bronze"),
    "maintain": ("maintain",),
}
# Where each stage's module (``run(spark, settings, scope) -> counts``) lives; imported when the stage runs.
STAGES: dict[str, str] = {
    "scrape": "ttb_spark.raw.scrape", "discover": "ttb_spark.raw.discover", "reconcile": "ttb_spark.raw.reconcile",
    "bronze": "ttb_spark.bronze", "silver": "ttb_spark.silver", "gold": "ttb_spark.gold",
    "reference": "ttb_spark.reference", "maintain": "ttb_spark.ops.maintain",
    "images": "ttb_spark.raw.image_fill",
}
NEEDS_REGISTRY = {"scrape", "reference", "discover", "reconcile", "images"}
DISCOVERY_JOBS = ("discover", "daily")  # their dates are completed dates; they share one watermark
WHOLE = {"reference", "maintain"}  # stages with no range: they cover the registry's lists or the lakehouse as a whole
UNCHUNKED = {job for job, stages in JOBS.items() if set(stages) <= WHOLE}  # jobs run once, not per chunk of dates
# jobs whose range is one chunk however long: a catch-up after a pause lists every day before it fetches (one
# listing of the registry, each ID fetched once), resumable by discovery's fetch parts (discover.PART_IDS); the images job
# spends its request budget once a run, on the range's COLAs in TTB ID order
ONE_PASS = {"daily", "images"}
SERIAL_STAGES = {"gold", "reference"}  # one run at a time: they write tables spanning receipt dates (locks.GOLD)
CHANGE_DRIVEN = {"silver", "gold"}
# a backfill by search: its range is receipt dates S..E, its chunks are completed dates (S..E, then the approval tail
# up to E + TTB_BACKFILL_LAG_DAYS or today), discovery keeps the IDs received in S..E, silver and gold follow their
# change watermarks per chunk
BACKFILL = {"pipeline"}


def after_chunks(job: str) -> tuple[str, ...]:
    """The stages a job runs once after its chunks, change-driven: silver and gold of a job whose
    dates are completed dates (they have no receipt-date range to follow)."""
    return tuple(s for s in JOBS[job] if s in CHANGE_DRIVEN) if job in DISCOVERY_JOBS else ()
