"""Bronze: the raw store's pages and manifests as Delta tables (the original ``ttb_raw_data``).

Reading is distributed: the driver only lists the manifests of the scope's partitions; executors
read each manifest (and its ``_COMPLETE`` summary), then fetch the pages it names, a thread pool
per task so S3 latency overlaps. Both reads are ``mapInArrow`` over DataFrames (no RDD, no
SparkContext), so the stage runs over Spark Connect too.

Decisions:

* Only **complete** partitions (``_COMPLETE`` present) are ingested. The manifest is the statement
  of what a walk found, so counts reconcile exactly: per partition, the summary's ``found`` must
  equal the manifest's ``found`` lines, and every manifest line with a stored page becomes one
  ``bronze.pages`` row. Partitions still being scraped are skipped (counted as
  ``partitions_incomplete``) and picked up by the next run after the scraper marks them complete.
* The page is kept as served, as a string decoded from ISO-8859-1 (the registry's declared
  charset). That decoding maps each byte to one code point, so it is lossless:
  ``encode(html, 'ISO-8859-1')`` gives back the exact bytes, whose SHA-256 is ``sha256``.
* ``bronze.pages`` is MERGEd on (ttb_id, data_type) and its ``row_hash`` covers the content only
  (not fetch time, scrape or ingest run), so a re-fetch of an unchanged page or a rerun of this
  stage rewrites nothing; a changed page updates exactly its row.
* ``bronze.scrape_manifest`` keeps every walk's attempt lines (key includes the scrape run id).
* Discovery (``ttb_spark.raw.discover``) fetches pages by what the registry's search listed and
  records them in per-run manifests (``manifests/discovery/...``, marker beside each). Every
  complete one not yet in ``ops.ingested_manifests`` is ingested with the walk's partitions and
  then recorded there, so each is read once; a page listed by several manifests keeps its latest
  answer, and a source row older than the stored row never overwrites it.
* A manifest line ``withdrawn`` (a stored page whose ID now answers the error page) keeps the
  stored copy and sets ``withdrawn_at``; a later ``found`` clears it.
* ``bronze.search_listings``: every row the search listed (from its answers as served, stored by
  discovery with a manifest), one per TTB ID and completed date.
* ``bronze.label_images``: every label image discovery stored (``ttb_spark.raw.images``), one row per TTB ID,
  label position and file name, from the complete label-image manifests not ingested yet; the bytes stay in
  the raw store (``path``). An image is final: a label already there keeps its row.

Laid out as every layer is: :mod:`.tables` (the table specs and the rows read), :mod:`.transforms`
(pure DataFrame -> DataFrame), :mod:`.executors` (the manifest reads and page fetches on the executors)
and :mod:`.stage` (read -> transform -> write). The names other code uses are imported here.
"""

from ttb_spark.bronze.executors import ReconciliationError, arrow_schema, checked_page_key
from ttb_spark.bronze.stage import pending_manifests, read_search_manifest, run
from ttb_spark.bronze.tables import (
    FETCHED, IMAGE_LINE, INGESTED_MANIFESTS, LABEL_IMAGES, MANIFEST_LINE, MANIFEST_LINES, PAGES, SCRAPE_MANIFEST, SEARCH_LISTINGS,
)  # fmt: skip
from ttb_spark.bronze.transforms import label_image_rows, manifest_records, page_rows, pages, parsed_manifest

__all__ = [
    "FETCHED", "IMAGE_LINE", "INGESTED_MANIFESTS", "LABEL_IMAGES", "MANIFEST_LINE", "MANIFEST_LINES", "PAGES", "SCRAPE_MANIFEST",
    "SEARCH_LISTINGS", "ReconciliationError", "arrow_schema", "checked_page_key", "label_image_rows", "manifest_records",
    "page_rows", "pages", "parsed_manifest",
    "pending_manifests", "read_search_manifest", "run",
]  # fmt: skip
