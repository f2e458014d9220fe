"""Every table of the lakehouse, in one explicit list: what maintenance, the run summary, ``relayout``, the
data dictionary and the tests mean by "every table". Each table is declared next to its transform (a
``TableSpec`` in its layer's module) and listed here once; declaring a spec registers nothing, so a
table is part of the lakehouse because it is in this list, not because its module happened to be
imported. tests/test_docs.py fails when a package module declares a table this list leaves out.
"""

from __future__ import annotations

from ttb_spark import bronze, lakehouse, reference, silver

from ttb_spark.ops import audit, locks
from ttb_spark.gold import stage as gold
from ttb_spark.lakehouse import TableSpec
from ttb_spark.watch.hits import WATCH_HITS

ALL: tuple[TableSpec, ...] = (
    # bronze: the raw pages and search answers as served, and what was scraped
    bronze.PAGES, bronze.SCRAPE_MANIFEST, bronze.SEARCH_LISTINGS, bronze.LABEL_IMAGES,
    # silver: parsed records, quarantined pages, withdrawals
    silver.COLA_DETAILS, silver.COLA_CERTIFICATES, silver.REJECTS, silver.WITHDRAWALS, silver.LABEL_IMAGES,
    # gold: the code lists, and what the gold stage builds
    reference.REFERENCE_DATA, *gold.TABLES, WATCH_HITS,
    # ops: run bookkeeping
    audit.PIPELINE_RUNS, lakehouse.WATERMARKS, locks.RUN_LOCKS, bronze.INGESTED_MANIFESTS,
)  # fmt: skip
BY_NAME: dict[str, TableSpec] = {spec.name: spec for spec in ALL}
