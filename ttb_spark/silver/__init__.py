"""Silver: bronze pages -> extracted -> cleaned -> structured tables, with a quarantine that loses nothing.

The original pipeline's three processing stages, each a pure DataFrame -> DataFrame function:

* :func:`extracted` (``ttb_extracted_data``): :func:`ttb_spark.registry.parse.parse_page` applied on the
  executors, one row per page: the page's key columns, parse status/reason and every field of
  the parse contract (details and certificates share one frame; fields of the other type are null).
* :func:`cleaned` (``ttb_cleaned_data``): normalised values and a ``violations`` array, one entry
  per failed rule (rule name, reason, blocking or not).
* :func:`structured` (``ttb_structured_data``): the typed rows of ``silver.cola_details`` /
  ``silver.cola_certificates``: pages that parsed and passed every blocking rule.
* :func:`rejects`: every other page, with the stage and rule that stopped it.

:func:`run` takes either the bronze pages changed since the last change-driven run
(``--since-last-run``: Delta change data feed of bronze.pages after the version recorded in
``ops.watermarks``) or every page of the scope's partitions (explicit reprocessing). Each page's
rows are replaced by what it gives now (a page now rejected leaves the structured table, a fixed
reject leaves the quarantine, a withdrawn page, ``withdrawn_at`` set, leaves both for
``silver.withdrawals``), in one MERGE per table pruned to the pages' partitions and keys. Then,
per partition touched, bronze pages = silver rows + rejected pages + withdrawn pages, or it raises.

The label images of ``bronze.label_images`` (changed since the last run, or the scope's receipt dates) are read
from the raw store and decoded on the executors (Pillow) into ``silver.label_images``: format, pixel size and a
difference hash, or the reason an image was rejected; per receipt date, bronze images = silver rows.

Laid out as every layer is: :mod:`.tables` (the table specs and the parse contract), :mod:`.transforms`
(pure DataFrame -> DataFrame), :mod:`.executors` (the parser and the image decoder on the executors) and :mod:`.stage`
(read -> transform -> write, watermarks). The names other layers use are imported here.
"""

from ttb_spark.silver.executors import decode_image, decoded_images, dhash, parse_one
from ttb_spark.silver.stage import STAGE, process, process_images, run
from ttb_spark.silver.tables import (
    CERTIFICATE, COLA_CERTIFICATES, COLA_DETAILS, DETAIL, LABEL, LABEL_IMAGES, PARSE_RESULT, PARSED, REJECTS, TABLES,
    WITHDRAWALS,
)  # fmt: skip
from ttb_spark.silver.transforms import (
    ReconciliationError, check_reconciliation, cleaned, date_batches, extracted, image_reconciliation, label_images,
    parse_results, reconciliation, rejects, structured, withdrawals,
)  # fmt: skip

__all__ = [
    "CERTIFICATE", "COLA_CERTIFICATES", "COLA_DETAILS", "DETAIL", "LABEL", "LABEL_IMAGES", "PARSE_RESULT", "PARSED",
    "REJECTS", "STAGE", "TABLES", "WITHDRAWALS", "ReconciliationError", "check_reconciliation", "cleaned", "date_batches",
    "decode_image", "decoded_images", "dhash", "extracted", "image_reconciliation", "label_images", "parse_one",
    "parse_results", "process", "process_images", "reconciliation", "rejects", "run", "structured", "withdrawals",
]  # fmt: skip
