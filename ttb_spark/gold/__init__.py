"""The ``gold`` stage: silver -> consolidated COLAs, reference data, dimensions, facts, quality checks.

Tables (each declared next to its transform):

* ``gold.ttb_consolidated`` (:mod:`.consolidated`) - one row per TTB ID;
* ``gold.ttb_reference_data`` (:mod:`ttb_spark.reference`) - seeded on first use;
* ``gold.dim_dates``, ``gold.dim_companies``, ``gold.dim_locations``, ``gold.dim_product_types``, and the
  per-permit ``gold.company_stats`` and ``gold.company_days`` (:mod:`.dimensions`);
* ``gold.fact_products``, ``gold.fact_certificates``, ``gold.fact_status_changes``, ``gold.fact_label_images``
  (the decoded label images of the certificates in gold), and ``gold.label_days`` (:mod:`.facts`);
* ``gold.quality_checks`` (:mod:`.quality`).

A run rebuilds a set of COLAs: with ``--since-last-run`` those whose silver rows (details, certificates, label
images) changed since the silver versions recorded in ``ops.watermarks`` (Delta change data feed), otherwise every COLA of
the scope's receipt dates. Prior state is read by pruned lookups (the batch's receipt dates and
TTB IDs); COLAs that lost their silver rows (withdrawn, rejected) are deleted from the
consolidated table and facts and recorded as events in ``fact_status_changes``. Every write is a
:func:`ttb_spark.lakehouse.merge_changes` with the batch's receipt months and dates as literal
predicates (the COLA-keyed tables are partitioned by receipt month, :mod:`.layout`), skipped when
it would change nothing: a rerun over the same silver rows writes nothing, except that
``gold.quality_checks`` logs the run's checks.

Write-audit-publish: a build records each gold table's version first, writes, then runs the
quality checks on what it wrote. When a blocking check fails (or a write raises), every gold table
the build changed is restored to its recorded version (Delta ``RESTORE``) before the error is
raised, so readers never keep unvalidated rows; the check results stay in ``gold.quality_checks``
and, the watermarks not having moved, the next run retries the same changes.

Laid out as every layer is: each table's spec next to its pure transform (DataFrame -> DataFrame) in
:mod:`.consolidated`, :mod:`.dimensions`, :mod:`.facts` and :mod:`.quality` (the checks, wired to the tables in :mod:`.checking`), what they share in
:mod:`.keys` (surrogate keys) and :mod:`.layout` (receipt-month partitioning), and :mod:`.stage` (read silver ->
transform -> MERGE, check, publish or restore, watermarks); no executors module: gold runs no Python code of its
own on the executors. :mod:`.queries` holds the example analyst queries. The names other code uses are imported here.
"""

from ttb_spark.gold.checking import check
from ttb_spark.gold.quality import QualityCheckError
from ttb_spark.gold.stage import (
    CHANGE_KINDS, PUBLISHED, STAGE, TABLES, build, changed_colas, history_version, idle, published_versions, read_silver,
    recorded_since, run, unpublish,
)  # fmt: skip

__all__ = [
    "CHANGE_KINDS", "PUBLISHED", "STAGE", "TABLES", "QualityCheckError", "build", "changed_colas", "check", "history_version",
    "idle", "published_versions", "read_silver", "recorded_since", "run", "unpublish",
]  # fmt: skip
