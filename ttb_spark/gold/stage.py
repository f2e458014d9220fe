"""The gold stage: read silver (the COLAs whose rows changed since the last run, or a scope's receipt dates),
transform (:mod:`.consolidated`, :mod:`.dimensions`, :mod:`.facts`), MERGE into the gold tables, check what was
written (:mod:`.quality`), restoring the tables' versions before the build when a blocking check fails, and
move the watermarks."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Callable

from pyspark.sql import functions as F

from ttb_spark import lakehouse, reference, silver
from ttb_spark.scope import ChangesSince
from ttb_spark.gold import quality
from ttb_spark.gold.consolidated import CONSOLIDATED, consolidate
from ttb_spark.gold.dimensions import (
    COMPANY_DAYS,
    COMPANY_STATS,
    DIM_COMPANIES,
    DIM_DATES,
    DIM_LOCATIONS,
    DIM_PRODUCT_TYPES,
    company_days,
    company_stats,
    dates_of,
    dim_companies,
    dim_dates,
    dim_locations,
    dim_product_types,
    federal_holidays,
)
from ttb_spark.gold.facts import (
    FACT_CERTIFICATES,
    FACT_LABEL_IMAGES,
    FACT_PRODUCTS,
    FACT_STATUS_CHANGES,
    LABEL_DAYS,
    changed_or_in_batch,
    fact_certificates,
    fact_label_images,
    fact_products,
    first_colas,
    label_days,
    removals,
    reinstatements,
    status_changes,
    with_completed_dates,
    with_flags,
)
from ttb_spark.gold.checking import check, scope_text
from ttb_spark.gold.layout import in_dates, in_receipt_range, receipt_prune
from ttb_spark.gold.quality import QUALITY_CHECKS, QualityCheckError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ttb_spark.scope import ReceiptDates
    from ttb_spark.settings import Settings

TABLES = (
    CONSOLIDATED, DIM_DATES, DIM_COMPANIES, COMPANY_STATS, DIM_LOCATIONS, DIM_PRODUCT_TYPES,
    FACT_PRODUCTS, FACT_CERTIFICATES, FACT_STATUS_CHANGES, FACT_LABEL_IMAGES, COMPANY_DAYS, LABEL_DAYS, QUALITY_CHECKS,
)  # fmt: skip
PUBLISHED = tuple(spec for spec in TABLES if spec is not QUALITY_CHECKS)  # validated before they count as published
STAGE = "gold"
SOURCES = (*silver.TABLES.values(), silver.LABEL_IMAGES)  # followed by their change feeds: a COLA changed in any is rebuilt
HOLIDAY_YEARS_AHEAD = 10  # holidays are computed up to this many years ahead (expiration dates)


def _silver_tables(spark: SparkSession, root: str) -> tuple[DataFrame, DataFrame]:
    """silver.cola_details and silver.cola_certificates."""
    from ttb_spark.silver.tables import COLA_CERTIFICATES, COLA_DETAILS

    return lakehouse.read_table(spark, COLA_DETAILS, root), lakehouse.read_table(spark, COLA_CERTIFICATES, root)


def read_silver(spark: SparkSession, root: str, scope: ReceiptDates) -> tuple[DataFrame, DataFrame]:
    """The scope's silver details and certificates (receipt-date range x receipt methods)."""
    def scoped(df: DataFrame) -> DataFrame:
        in_range = F.col("receipt_date").between(F.lit(scope.start), F.lit(scope.end))
        return df.where(in_range & F.col("receipt_method").isin(list(scope.receipt_methods)))

    details, certificates = _silver_tables(spark, root)
    return scoped(details), scoped(certificates)


def idle(spark: SparkSession, settings: Settings, scope: ReceiptDates | ChangesSince) -> dict[str, int] | None:
    """The counts of a change-driven run with nothing to do: every silver table at the version gold last processed
    (a later silver commit is the run's that made it, and that run's gold takes it). The runner then takes
    no gold claim: a run with nothing new makes no ``ops.run_locks`` commit for gold. None: there is work."""
    if not isinstance(scope, ChangesSince):
        return None
    root = settings.pipeline.lakehouse_root
    marks = lakehouse.read_watermarks(spark, root, STAGE)
    for spec in SOURCES:
        latest = lakehouse.current_version(spark, spec, root)
        if latest is not None and marks.get(spec.name) != latest:
            return None
    return {"colas": 0}


def changed_colas(spark: SparkSession, root: str) -> tuple[DataFrame | None, dict[str, int]]:
    """(ttb_id, receipt_date) of the COLAs whose silver rows changed since the versions gold last
    processed (every COLA on the first change-driven run), and the versions read through; None: no change."""
    marks = lakehouse.read_watermarks(spark, root, STAGE)
    through: dict[str, int] = {}
    parts: list[DataFrame] = []
    for spec in SOURCES:
        lakehouse.ensure_properties(spark, spec, root)
        latest = lakehouse.current_version(spark, spec, root)
        if latest is None:
            continue
        through[spec.name] = latest
        mark = marks.get(spec.name)
        if mark is None:
            parts.append(lakehouse.read_version(spark, spec, root, latest).select("ttb_id", "receipt_date"))
        elif mark < latest:
            parts.append(lakehouse.read_changes(spark, spec, root, mark, latest).select("ttb_id", "receipt_date"))
    if not parts:
        return None, through
    changed = parts[0]
    for p in parts[1:]:
        changed = changed.unionByName(p)
    return changed.distinct(), through


CHANGE_KINDS = {"initial": "new", "change": "status_changed", "withdrawn": "withdrawn", "rejected": "removed", "removed": "removed",
                "reinstated": "reinstated"}


def history_version(spark: SparkSession, root: str) -> int | None:
    """The current version of gold.fact_status_changes (None before it exists)."""
    return lakehouse.current_version(spark, FACT_STATUS_CHANGES, root)


def recorded_since(spark: SparkSession, root: str, version: int | None) -> dict[str, list[str]]:
    """What gold recorded in fact_status_changes after ``version`` (its rows then): new, status_changed,
    withdrawn, removed -> the TTB IDs, each kind present."""
    current = lakehouse.read_table(spark, FACT_STATUS_CHANGES, root)
    if version is not None:
        keys = list(FACT_STATUS_CHANGES.keys)
        current = current.join(lakehouse.read_version(spark, FACT_STATUS_CHANGES, root, version).select(*keys), keys, "left_anti")
    out: dict[str, set[str]] = {}
    for row in current.select("change_type", "ttb_id").distinct().collect():
        out.setdefault(CHANGE_KINDS.get(row["change_type"], row["change_type"]), set()).add(row["ttb_id"])
    return {kind: sorted(ids) for kind, ids in sorted(out.items())}


def _merge(
    counts: dict[str, int], name: str, spark: SparkSession, df: DataFrame, spec: lakehouse.TableSpec, root: str,
    prune: dict[str, list] | None = None, deletes: DataFrame | None = None,
) -> None:  # fmt: skip
    """MERGE ``df`` (and delete the keys in ``deletes``) into ``spec`` via lakehouse.merge_changes,
    which skips a MERGE that would change nothing; counts as ``<name>_inserted`` ..."""
    result = lakehouse.merge_changes(spark, df, deletes, spec, root, prune=prune)
    counts.update({f"{name}_{k}": v for k, v in result.items()})


def published_versions(spark: SparkSession, root: str) -> dict[str, int | None]:
    """Each published gold table's current version (None: not created yet): the state a failed build restores."""
    return {spec.name: lakehouse.current_version(spark, spec, root) for spec in PUBLISHED}


def unpublish(spark: SparkSession, root: str, versions: dict[str, int | None]) -> list[str]:
    """Restore every published gold table whose version moved since ``versions``; the names restored."""
    restored = []
    for spec in PUBLISHED:
        before = versions.get(spec.name)
        if lakehouse.current_version(spark, spec, root) not in (None, before):
            lakehouse.restore_version(spark, spec, root, before)
            restored.append(spec.name)
    return restored


def run(spark: SparkSession, settings: Settings, scope: ReceiptDates | ChangesSince) -> dict[str, int]:
    """The ``gold`` stage. For :class:`~ttb_spark.scope.ChangesSince`: the COLAs whose silver rows changed since
    the silver versions the last change-driven run processed (every receipt method), their silver rows read
    by pruned lookups; the watermarks move after the writes. For :class:`~ttb_spark.scope.ReceiptDates`: every
    COLA of its receipt dates and methods."""
    root = settings.pipeline.lakehouse_root
    if not isinstance(scope, ChangesSince):
        details, certificates = read_silver(spark, root, scope)
        return build(spark, settings, scope, details, certificates)
    changed, through = changed_colas(spark, root)
    counts: dict[str, int] = {"colas": 0}
    if changed is not None:
        changed = changed.localCheckpoint()
        dates = sorted(r[0] for r in changed.select("receipt_date").distinct().collect())
        details, certificates = (in_dates(df, dates) for df in _silver_tables(spark, root))
        counts = build(spark, settings, scope, details, certificates, changed)
    lakehouse.write_watermarks(spark, root, STAGE, through, scope.run_id)
    return counts


def build(
    spark: SparkSession, settings: Settings, scope: ReceiptDates | ChangesSince, details: DataFrame, certificates: DataFrame,
    affected: DataFrame | None = None,
) -> dict[str, int]:  # fmt: skip
    """Bring gold in line with silver-shaped ``details`` / ``certificates`` (every silver row of their receipt dates).

    ``affected`` (ttb_id, receipt_date) limits the COLAs rebuilt to those; without it, every COLA
    of the scope (receipt-date range x receipt methods). A COLA rebuilt that no longer has a silver
    row (withdrawn, or its pages now rejected) is deleted from the consolidated table and the facts,
    and the removal is an event in fact_status_changes. When a blocking check fails, records the
    checks, restores the gold tables to their versions before the build (:func:`unpublish`) and
    raises :class:`QualityCheckError`; a write that raises is undone the same way.
    """
    root = settings.pipeline.lakehouse_root
    counts: dict[str, int] = {}
    for k, v in reference.ensure_seeded(spark, settings).items():
        counts[f"reference_{k}"] = v
    published = published_versions(spark, root)
    try:
        results = _write_and_check(spark, settings, scope, details, certificates, affected, published, counts)
    except Exception as exc:
        exc.add_note(_undo(spark, root, published))
        raise
    if results is None:
        return counts
    failed = quality.failures(results)
    if failed and settings.analytics.blocking_quality_checks:
        undone = _undo(spark, root, published)
        raise QualityCheckError(
            f"blocking gold quality checks failed: {', '.join(r.name for r in failed)} ({undone}); "
            + "; ".join(f"{r.name}: {r.detail}" for r in failed)
        )
    return counts


def _undo(spark: SparkSession, root: str, published: dict[str, int | None]) -> str:
    """Restore gold to ``published`` after a failed build; says what was restored, or why it could not be."""
    try:
        restored = unpublish(spark, root, published)
    except Exception as failed:  # reported with, never instead of, the build's own error
        return f"gold NOT restored to its published state ({type(failed).__name__}: {str(failed)[:300]}); rerun the gold stage"
    return "nothing published: " + (f"{', '.join(restored)} restored to their versions before the run" if restored else "no gold table had changed")


def _write_and_check(
    spark: SparkSession, settings: Settings, scope: ReceiptDates | ChangesSince, details: DataFrame, certificates: DataFrame,
    affected: DataFrame | None, published: dict[str, int | None], counts: dict[str, int],
) -> list[quality.CheckResult] | None:  # fmt: skip
    """The build's writes, then its checks (recorded in gold.quality_checks); None when the batch is empty."""
    root = settings.pipeline.lakehouse_root
    ref = reference.read(spark, settings).localCheckpoint()
    if affected is None:
        # the TTB ID's receipt method (YYJJJ RRR SSSSSS): fact_certificates has no receipt_method column
        in_scope = in_receipt_range(scope.start, scope.end) & F.substring("ttb_id", 6, 3).isin(list(scope.receipt_methods))

        def of_scope(df: DataFrame) -> DataFrame:
            return df.where(in_scope)

        inputs = (details, certificates)
    else:
        ids = F.broadcast(affected.select("ttb_id").distinct())
        affected_dates = sorted(r[0] for r in affected.select("receipt_date").distinct().collect())

        def of_scope(df: DataFrame) -> DataFrame:
            return in_dates(df, affected_dates).join(ids, "ttb_id", "left_semi")

        inputs = (details.join(ids, "ttb_id", "left_semi"), certificates.join(ids, "ttb_id", "left_semi"))
    stored = of_scope(lakehouse.read_table(spark, CONSOLIDATED, root))
    # checkpointed, not cached: a cached frame's tasks carry the plan that built it (the consolidation's, ~2 MB
    # shipped per stage: Spark's "large task binary"); a checkpoint's carry none (~40 such stages fewer a run)
    batch = consolidate(*inputs, ref, settings.consolidation.prefer_certificate_codes).localCheckpoint()
    # materialised now: ``stored`` is re-read (new version) if recomputed after the MERGEs below
    stored = stored.localCheckpoint()
    removed = stored.join(batch.select("ttb_id"), "ttb_id", "left_anti").select(
        "ttb_id", "receipt_date", "status", "permit_number", "detail_fetched_at", "certificate_fetched_at"
    )
    removed = removed.localCheckpoint()
    # removed from ttb_consolidated but not from the facts: what a run killed between those MERGEs left
    orphans = _orphaned_facts(spark, root, of_scope, batch, stored).localCheckpoint()
    per_day = batch.groupBy("receipt_date").count().collect()
    counts["colas"] = sum(r["count"] for r in per_day)
    gone_dates = [r[0] for r in removed.select("receipt_date").distinct().collect()]
    orphan_dates = [r[0] for r in orphans.select("receipt_date").distinct().collect()]
    if affected is None:
        vanished, suspect_dates = None, scope.dates
    else:  # the COLAs affected that no table the build reads COLAs from holds any more
        held = batch.select("ttb_id").unionByName(stored.select("ttb_id")).unionByName(orphans.select("ttb_id"))
        vanished = affected.select("ttb_id", "receipt_date").join(held, "ttb_id", "left_anti").localCheckpoint()
        suspect_dates = [r[0] for r in vanished.select("receipt_date").distinct().collect()]
    seeded = _seeded(spark, root)
    stale = _stale_day_rows(spark, root, suspect_dates) if seeded else []
    dates = sorted({r["receipt_date"] for r in per_day} | set(gone_dates) | set(orphan_dates) | {d for _, d in stale})
    if not dates:
        return None
    counts["colas_removed"] = removed.count()
    prune = receipt_prune(dates)
    events = with_completed_dates(status_changes(stored, batch), _listings(spark, root, batch, dates))
    events = reinstatements(events, in_dates(lakehouse.read_table(spark, FACT_STATUS_CHANGES, root), dates)
                            .join(F.broadcast(batch.select("ttb_id")), "ttb_id", "left_semi"))
    if gone_dates:
        events = events.unionByName(removals(removed, *_removal_reasons(spark, root, removed, gone_dates)))
    changes = events.localCheckpoint()
    _merge(counts, "status_changes", spark, changes, FACT_STATUS_CHANGES, root, prune=prune)
    _merge(counts, "consolidated", spark, batch, CONSOLIDATED, root, prune=prune, deletes=removed)
    gone = removed.select(*orphans.columns).unionByName(orphans)
    # every recorded event of the COLAs touched, this run's and those a killed run recorded (its
    # consolidated MERGE done, so this run finds no change to record again): dim_dates covers their dates;
    # a range build takes every event of its dates (a COLA a killed run removed is in no table it reads)
    recorded = in_dates(lakehouse.read_table(spark, FACT_STATUS_CHANGES, root), dates)
    if vanished is not None:
        touched = batch.select("ttb_id").unionByName(gone.select("ttb_id")).unionByName(vanished.select("ttb_id"))
        recorded = recorded.join(F.broadcast(touched), "ttb_id", "left_semi")
    _build_dimensions_and_facts(spark, settings, batch, gone, stored, ref, recorded, dates, counts, sorted({p for p, _ in stale}), seeded)
    results = check(spark, settings, scope, dates, details, certificates, published)
    lakehouse.merge_upsert(spark, quality.to_frame(spark, scope.run_id, results, scope_text(dates)), QUALITY_CHECKS, root)
    counts["checks_passed"] = sum(r.passed for r in results)
    counts["checks_failed"] = sum(not r.passed and r.blocking for r in results)
    counts["checks_warned"] = sum(not r.passed and not r.blocking for r in results)  # failed, non-blocking
    return results


def _orphaned_facts(
    spark: SparkSession, root: str, of_scope: Callable[[DataFrame], DataFrame], batch: DataFrame, stored: DataFrame,
) -> DataFrame:  # fmt: skip
    """(ttb_id, receipt_date, permit_number) of the COLAs of the build's scope (``of_scope``, the filter of its
    ttb_consolidated read) still in fact_products or fact_certificates that neither the batch nor
    ttb_consolidated holds: ttb_consolidated's MERGE (with the
    removals) commits before the facts', so a run killed between them leaves the removed COLAs in the facts
    only, their removal events already recorded. Deleted from the facts and their permits' day rows now,
    without new events, the rerun ends where an uninterrupted run ends instead of failing its checks."""
    products = of_scope(lakehouse.read_table(spark, FACT_PRODUCTS, root)).select("ttb_id", "receipt_date", "permit_number")
    certificates = of_scope(lakehouse.read_table(spark, FACT_CERTIFICATES, root)).select("ttb_id", "receipt_date")
    certificates = certificates.join(products.select("ttb_id"), "ttb_id", "left_anti")
    in_facts = products.unionByName(certificates.withColumn("permit_number", F.lit(None).cast("string")))
    held = batch.select("ttb_id").unionByName(stored.select("ttb_id"))
    return in_facts.join(held, "ttb_id", "left_anti")


def _stale_day_rows(spark: SparkSession, root: str, dates: list[date]) -> list[tuple[str, date]]:
    """(permit_number, receipt_date) of the gold.company_days and gold.label_days rows on ``dates`` that are not
    what ttb_consolidated's COLAs of those dates make. A run killed after the facts' MERGEs and before the day
    tables' leaves such rows: its removed COLAs are then in no table the rerun reads COLAs from (neither the
    batch, ttb_consolidated nor the facts), so only their days still count them. Rebuilt with the batch.
    Only for seeded day tables (:func:`_seeded`): a seeding build rebuilds every day row anyway."""
    if not dates:
        return []
    rows = in_dates(lakehouse.read_table(spark, CONSOLIDATED, root), dates)
    differ = []
    for spec, make in ((COMPANY_DAYS, company_days), (LABEL_DAYS, label_days)):
        fresh = make(rows)
        held = in_dates(lakehouse.read_table(spark, spec, root), dates).select(*fresh.columns)
        differ.append(held.exceptAll(fresh).unionByName(fresh.exceptAll(held)).select("permit_number", "receipt_date"))
    return sorted((r[0], r[1]) for r in differ[0].unionByName(differ[1]).distinct().collect())


def _listings(spark: SparkSession, root: str, batch: DataFrame, dates: list[date]) -> DataFrame:
    """The bronze.search_listings rows of the batch's COLAs, by pruned lookup: completed dates from the
    batch's first receipt date on (partition filter), its receipt dates and TTB IDs."""
    from ttb_spark import bronze

    listings = lakehouse.read_table(spark, bronze.SEARCH_LISTINGS, root)
    in_dates = (F.col("completed_date") >= F.lit(dates[0])) & F.col("receipt_date").isin(dates)
    return listings.where(in_dates).join(F.broadcast(batch.select("ttb_id")), "ttb_id", "left_semi")


def _removal_reasons(spark: SparkSession, root: str, removed: DataFrame, dates: list[date]) -> tuple[DataFrame, DataFrame]:
    """The silver.withdrawals and silver.rejects rows of the removed COLAs (pruned lookups by receipt date and TTB ID)."""
    from ttb_spark import silver

    ids = F.broadcast(removed.select("ttb_id"))

    def rows(spec: lakehouse.TableSpec) -> DataFrame:
        return in_dates(lakehouse.read_table(spark, spec, root), dates).join(ids, "ttb_id", "left_semi")

    return rows(silver.WITHDRAWALS), rows(silver.REJECTS)


def _build_dimensions_and_facts(
    spark: SparkSession, settings: Settings, batch: DataFrame, removed: DataFrame, stored: DataFrame, ref: DataFrame,
    events: DataFrame, dates: list[date], counts: dict[str, int], stale_permits: list[str], seeded: bool,
) -> None:  # fmt: skip
    """Dimensions and facts of the batch (``events``: the recorded status events of the COLAs touched, whose
    dates dim_dates covers; ``stored``: ttb_consolidated's rows of the build's scope before it, whose
    permits are rebuilt too, so a COLA whose permit number changed leaves its old permit), from the day
    rows of its permits and brands (gold.company_days,
    gold.label_days: prior state read by the batch's permit numbers and receipt dates), never from every
    COLA of those permits. The day tables are written last, so a rerun after a crash finds the prior state
    the facts' old flags were computed from. Without them (a new lakehouse, one from before them, or one
    whose first build of them failed: ``seeded`` false, :func:`_seeded`) they are first built from the whole of ttb_consolidated.
    ``stale_permits``: permits whose day rows on ``dates`` a killed run left stale (:func:`_stale_day_rows`)."""
    root = settings.pipeline.lakehouse_root
    consolidated = lakehouse.read_table(spark, CONSOLIDATED, root)
    seeding = not seeded
    if seeding:
        _replace_numbered_dim_companies(spark, root)
        permit_list = None
        day_rows = consolidated
    else:
        permits = batch.select("permit_number").unionByName(removed.select("permit_number")).unionByName(stored.select("permit_number"))
        permits = permits.where(F.col("permit_number").isNotNull())
        permit_list = sorted({r[0] for r in permits.distinct().collect()} | set(stale_permits))
        day_rows = in_dates(consolidated, dates).where(F.col("permit_number").isin(permit_list))
    day_rows = day_rows.where(F.col("permit_number").isNotNull()).localCheckpoint()

    def of_permits(spec: lakehouse.TableSpec) -> DataFrame:
        df = lakehouse.read_table(spark, spec, root)
        return df if permit_list is None else df.where(F.col("permit_number").isin(permit_list))

    def on_dates(df: DataFrame) -> DataFrame:
        return df if seeding else in_dates(df, dates)

    def merged(stored: DataFrame, new: DataFrame) -> DataFrame:
        """Every day row of the groups in ``stored``/``new``: the batch's days as they are now, the others as stored."""
        kept = stored.limit(0) if seeding else stored.where(~F.col("receipt_date").isin(dates))
        return kept.select(*new.columns).unionByName(new).localCheckpoint()

    new_cdays, new_ldays = company_days(day_rows).localCheckpoint(), label_days(day_rows).localCheckpoint()
    stored_cdays = of_permits(COMPANY_DAYS).localCheckpoint()
    ldays = of_permits(LABEL_DAYS)
    brands = new_ldays.select("permit_number", "brand_name").unionByName(on_dates(ldays).select("permit_number", "brand_name"))
    brands = brands.distinct().localCheckpoint()
    stored_ldays = ldays.join(brands, ["permit_number", "brand_name"], "left_semi").localCheckpoint()
    all_cdays, all_ldays = merged(stored_cdays, new_cdays), merged(stored_ldays, new_ldays)

    by_permit = None if permit_list is None else {"permit_number": permit_list}
    companies = dim_companies(all_cdays).localCheckpoint()
    _merge(counts, "dim_companies", spark, companies, DIM_COMPANIES, root, prune=by_permit, deletes=of_permits(DIM_COMPANIES))
    stats = company_stats(all_cdays, companies)
    _merge(counts, "company_stats", spark, stats, COMPANY_STATS, root, prune=by_permit, deletes=of_permits(COMPANY_STATS))
    _merge(counts, "dim_locations", spark, dim_locations(batch, ref), DIM_LOCATIONS, root)
    _merge(counts, "dim_product_types", spark, dim_product_types(batch, ref), DIM_PRODUCT_TYPES, root)

    # facts to rebuild: the batch's, and the COLAs that were or now are a first (their flags may flip)
    firsts = first_colas(all_cdays, all_ldays).localCheckpoint()
    were_firsts = first_colas(stored_cdays, stored_ldays).select("ttb_id", "receipt_date")
    rebuilt = (
        batch.select("ttb_id", "receipt_date").unionByName(firsts.select("ttb_id", "receipt_date")).unionByName(were_firsts)
        .distinct().join(removed.select("ttb_id"), "ttb_id", "left_anti").localCheckpoint()
    )  # fmt: skip
    fact_dates = sorted({r[0] for r in rebuilt.select("receipt_date").distinct().collect()} | set(dates))
    ids = rebuilt.select("ttb_id")
    rows = in_dates(consolidated, fact_dates).join(ids, "ttb_id", "left_semi").localCheckpoint()
    # a permit's first COLA may carry a brand the batch does not touch: its flags need that brand's days too
    other_brands = rows.select("permit_number", "brand_name").distinct().join(brands, ["permit_number", "brand_name"], "left_anti")
    every_brand = all_ldays.unionByName(ldays.join(other_brands, ["permit_number", "brand_name"], "left_semi").select(*all_ldays.columns))
    stored_facts = in_dates(lakehouse.read_table(spark, FACT_PRODUCTS, root), fact_dates).join(ids, "ttb_id", "left_semi")
    flagged = with_flags(rows, first_colas(all_cdays, every_brand))
    products = changed_or_in_batch(fact_products(flagged), batch, stored_facts).localCheckpoint()
    replaced = batch.select("ttb_id").unionByName(removed.select("ttb_id"))  # a certificate now rejected leaves the fact
    _label_images(spark, root, counts, batch, replaced, dates)
    _merge(counts, "fact_products", spark, products, FACT_PRODUCTS, root, prune=receipt_prune(fact_dates), deletes=removed)
    certs = fact_certificates(batch)
    _merge(counts, "fact_certificates", spark, certs, FACT_CERTIFICATES, root, prune=receipt_prune(dates), deletes=replaced)

    calendar = dates_of([
        (products, ("receipt_date", "application_date", "approval_date")),
        (certs, ("application_date", "issued_date", "expiration_date")),
        (companies, ("valid_from", "valid_until")),
        (events, ("observed_at",)),
    ])
    years = range(settings.analytics.min_valid_date.year, date.today().year + HOLIDAY_YEARS_AHEAD + 1)
    _merge(counts, "dim_dates", spark, dim_dates(calendar, federal_holidays(spark, years)), DIM_DATES, root)

    day_prune = None if seeding else {"receipt_date": dates, "permit_number": permit_list}
    _merge(counts, "company_days", spark, new_cdays, COMPANY_DAYS, root, prune=day_prune, deletes=on_dates(stored_cdays))
    _merge(counts, "label_days", spark, new_ldays, LABEL_DAYS, root, prune=day_prune, deletes=on_dates(stored_ldays))


def _label_images(spark: SparkSession, root: str, counts: dict[str, int], batch: DataFrame, replaced: DataFrame, dates: list[date]) -> None:
    """gold.fact_label_images of the COLAs ``replaced`` (the batch's and those removed): their decoded silver images
    their certificates name; rows of a COLA removed or of a label its certificate no longer names are deleted.
    MERGEd before fact_products and fact_certificates: a run killed in between leaves a removed COLA in those facts,
    where the rerun finds it (:func:`_orphaned_facts`) and removes its images too. Nothing without silver images."""
    if not lakehouse.table_exists(spark, silver.LABEL_IMAGES, root):
        return
    ids = F.broadcast(replaced.distinct())
    images = in_dates(lakehouse.read_table(spark, silver.LABEL_IMAGES, root), dates).join(ids, "ttb_id", "left_semi")
    stale = in_dates(lakehouse.read_table(spark, FACT_LABEL_IMAGES, root), dates).join(ids, "ttb_id", "left_semi")
    rows = fact_label_images(batch, images)
    _merge(counts, "fact_label_images", spark, rows, FACT_LABEL_IMAGES, root, prune=receipt_prune(dates), deletes=stale.select(*FACT_LABEL_IMAGES.keys))


def _seeded(spark: SparkSession, root: str) -> bool:
    """Whether the day tables hold every COLA's days: they exist and are not empty. Not their existence
    alone: a build that fails its checks leaves the tables it created empty, not gone (:func:`unpublish`),
    and the next build must fill them from the whole of ttb_consolidated again. One query for both tables."""
    specs = (COMPANY_DAYS, LABEL_DAYS)
    if not all(lakehouse.table_exists(spark, spec, root) for spec in specs):
        return False
    firsts = [lakehouse.read_table(spark, spec, root).select(F.lit(n).alias("table")).limit(1) for n, spec in enumerate(specs)]
    return len(firsts[0].unionByName(firsts[1]).collect()) == len(specs)


def _replace_numbered_dim_companies(spark: SparkSession, root: str) -> None:
    """One-off upgrade: a gold.dim_companies from before versions were keyed by (permit_number, valid_from)
    (it has the old ``version`` column, which :func:`lakehouse.migrate` will not drop) is replaced by an empty
    table of the new shape, which the seeding run then fills from ttb_consolidated; the old rows stay
    readable by time travel (``VERSION AS OF``) until VACUUM."""
    if not lakehouse.table_exists(spark, DIM_COMPANIES, root) or "version" not in lakehouse.read_table(spark, DIM_COMPANIES, root).columns:
        return
    lakehouse.replace_table(spark, DIM_COMPANIES, root)
