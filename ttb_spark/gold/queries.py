"""Example analyst queries over the gold star schema (docs/quality.md, "Example queries").

``python -m ttb_spark.gold.queries [--env ENV] [--lakehouse-root ROOT]`` registers every gold
table as a temporary view named after the table (``fact_products``, ``dim_companies`` ...),
runs the queries and prints their results.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Sequence

from ttb_spark import lakehouse

if TYPE_CHECKING:
    from pyspark.sql import Row, SparkSession

EXAMPLES: dict[str, str] = {
    "approvals_per_month_by_category": """
        SELECT d.year, d.month, p.product_type, p.family, count(*) AS approvals
        FROM fact_products f
        JOIN dim_dates d ON d.date_key = f.approval_date_key
        JOIN dim_product_types p ON p.product_type_key = f.product_type_key
        GROUP BY d.year, d.month, p.product_type, p.family
        ORDER BY d.year, d.month, p.product_type, p.family
    """,
    # "Last week" = the 7 days up to the latest receipt date in the lakehouse.
    "new_companies_last_week": """
        SELECT c.permit_number, c.company_name, c.permit_type, c.state, s.first_seen
        FROM company_stats s
        JOIN dim_companies c ON c.company_key = s.company_key AND c.is_current
        WHERE s.first_seen > (SELECT date_sub(max(receipt_date), 7) FROM fact_products)
        ORDER BY s.first_seen, c.permit_number
    """,
    "median_days_to_approval_by_product_type": """
        SELECT p.product_type, count(*) AS colas, median(f.days_to_approval) AS median_days_to_approval
        FROM fact_products f
        JOIN dim_product_types p ON p.product_type_key = f.product_type_key
        WHERE f.days_to_approval IS NOT NULL
        GROUP BY p.product_type
        ORDER BY p.product_type
    """,
    # The same label artwork filed under other COLAs: image pairs whose 64-bit difference hashes differ in at most
    # 3 bits. Pairs are found through their hashes' four 16-bit quarters (two hashes 3 bits apart share at least
    # one quarter whole), so no image is compared with every other; the distance counts each 32-bit half's bits.
    "same_artwork_under_other_colas": """
        WITH quarters AS (
            SELECT ttb_id, position, file_name, dhash,
                   posexplode(array(substr(dhash, 1, 4), substr(dhash, 5, 4), substr(dhash, 9, 4), substr(dhash, 13, 4)))
                       AS (part, quarter)
            FROM fact_label_images
        ),
        pairs AS (
            SELECT DISTINCT a.ttb_id, a.position, a.file_name, b.ttb_id AS other_ttb_id, b.position AS other_position,
                   b.file_name AS other_file_name,
                   bit_count(CAST(conv(substr(a.dhash, 1, 8), 16, 10) AS BIGINT) ^ CAST(conv(substr(b.dhash, 1, 8), 16, 10) AS BIGINT))
                   + bit_count(CAST(conv(substr(a.dhash, 9, 8), 16, 10) AS BIGINT) ^ CAST(conv(substr(b.dhash, 9, 8), 16, 10) AS BIGINT))
                       AS distance
            FROM quarters a
            JOIN quarters b ON a.part = b.part AND a.quarter = b.quarter AND a.ttb_id < b.ttb_id
        )
        SELECT * FROM pairs WHERE distance <= 3
        ORDER BY distance, ttb_id, position, other_ttb_id, other_position
    """,
}


def register_views(spark: SparkSession, lakehouse_root: str) -> list[str]:
    """Register every gold table as a temporary view named after the table; returns the names."""
    from ttb_spark.tables import ALL

    names = []
    for spec in (s for s in ALL if s.name.startswith("gold.")):
        view = spec.name.split(".", 1)[1]
        lakehouse.read_table(spark, spec, lakehouse_root).createOrReplaceTempView(view)
        names.append(view)
    return names


def run_examples(spark: SparkSession, lakehouse_root: str) -> dict[str, list[Row]]:
    """Every example query's result rows."""
    register_views(spark, lakehouse_root)
    return {name: spark.sql(sql).collect() for name, sql in EXAMPLES.items()}


def main(argv: Sequence[str] | None = None) -> int:
    from ttb_spark.settings import load_settings
    from ttb_spark.spark import get_spark

    parser = argparse.ArgumentParser(prog="python -m ttb_spark.gold.queries", description=__doc__.splitlines()[0])
    parser.add_argument("--env", help="settings profile (default $TTB_ENVIRONMENT or development)")
    parser.add_argument("--lakehouse-root", help="lakehouse root (TTB_LAKEHOUSE_ROOT)")
    args = parser.parse_args(argv)
    settings = load_settings(args.env, {"pipeline": {"lakehouse_root": args.lakehouse_root}})
    spark = get_spark(settings, app_name="ttb_spark-queries")
    register_views(spark, settings.pipeline.lakehouse_root)
    for name, sql in EXAMPLES.items():
        sys.stdout.write(f"-- {name}\n")
        spark.sql(sql).show(50, truncate=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
