"""What label images cost (#26): requests per stored image with the 48-hour delay on, images fetched and decoded
per second, and storage per 1,000 COLAs (of the COLAs with images stored).

The embedded simulator (seed 0, faults off, its clock on) serves a week of completed dates; discovery fetches
each certificate's labels in its session, deferring those not due; two days later a second run revisits them
(the certificate shown again, then its images). Requests per stored image count every image request and every
certificate shown again, over both runs. Then bronze and silver (``--since-last-run``: the pages, then every
image decoded on the executors) in this process's local[2] session; the decode figure times a second
:func:`ttb_spark.silver.process_images` over every stored image (read from the raw store, decoded, no row changed).

Run: ``.venv/bin/python -m bench.images_bench [--scale 0.2] [--days 7]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date, datetime, time as clock, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from bench.__main__ import publish

TODAY = date(2024, 3, 1)


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.images_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.2, help="the simulator's share of the registry's daily volume")
    parser.add_argument("--days", type=int, default=7, help="completed dates the first run lists")
    return parser.parse_args(argv)


def _at(day: date) -> datetime:
    return datetime.combine(day, clock(12), timezone.utc)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    from ttb_spark import bronze, lakehouse, silver
    from ttb_spark.raw import discover, storage
    from ttb_spark.raw.images import OUTCOMES
    from ttb_spark.registry import simulator
    from ttb_spark.scope import ChangesSince, ReceiptDates
    from ttb_spark.settings import load_settings
    from ttb_spark.spark import get_spark

    first = TODAY - timedelta(days=args.days - 1)
    with tempfile.TemporaryDirectory() as tmp, simulator.running(seed=0, scale=args.scale, today=TODAY) as sim:
        settings = load_settings("test", {
            "pipeline": {"raw_root": str(Path(tmp) / "raw"), "lakehouse_root": str(Path(tmp) / "lakehouse")},
            "extraction": {"registry_base_url": sim.base_url, "use_simulator": False, "label_images": True},
        })  # fmt: skip
        store = storage.raw_store(settings)
        started = time.monotonic()
        one = discover.discover(settings, "r1", first, TODAY, history_start=first, now=_at(TODAY))
        fetched = time.monotonic() - started
        sim.today = TODAY + timedelta(days=2)
        started = time.monotonic()
        two = discover.discover(settings, "r2", TODAY + timedelta(days=1), sim.today, history_start=first, sweep=False, now=_at(sim.today))
        revisited = time.monotonic() - started
        shown = [h.ttb_id for h in sim.hits if h.data_type == "certificate" and h.answer == "page"]
        image_hits = sum(1 for h in sim.hits if h.data_type == "label-image")

        spark = get_spark(settings, app_name="bench-images")
        root = settings.pipeline.lakehouse_root
        started = time.monotonic()
        bronze.run(spark, settings, ReceiptDates(first, sim.today, ("001",), ("cola-detail", "certificate"), run_id="b1"))
        bronze_seconds = time.monotonic() - started
        started = time.monotonic()
        decoded = silver.run(spark, settings, ChangesSince(sim.today, "s1"))
        silver_seconds = time.monotonic() - started
        rows = lakehouse.read_table(spark, bronze.LABEL_IMAGES, root)
        started = time.monotonic()
        again = silver.process_images(spark, settings, rows)
        decode_seconds = time.monotonic() - started
        stored = store.list("images/")
        size = sum((Path(tmp) / "raw" / key).stat().st_size for key in stored)
    images = len(stored)
    colas = len({key.split("/")[2] for key in stored})  # images/receipt_date=<day>/<ttb_id>/<position>-<digest>
    result = {
        "colas_with_images_stored": colas,
        "labels_first_run": sum(one.get(f"images_{outcome}", 0) for outcome in OUTCOMES),
        "images_stored": images,
        "image_requests": one["image_requests"] + two["image_requests"],
        "certificates_shown_again": len(shown) - len(set(shown)),
        "requests_per_stored_image": round((one["image_requests"] + two["image_requests"]) / images, 3),
        "simulator_image_hits": image_hits,
        "first_run_seconds": round(fetched, 1),
        "revisit_run_seconds": round(revisited, 1),
        "images_stored_per_second_of_discovery": round(images / (fetched + revisited), 1),
        "storage_mb": round(size / 1e6, 1),
        "storage_mb_per_1000_colas": round(size / 1e6 / colas * 1000, 1),
        "bronze_seconds": round(bronze_seconds, 1),
        "silver_seconds_pages_and_images": round(silver_seconds, 1),
        "silver_images_decoded": decoded.get("images_decoded", 0),
        "decode_seconds": round(decode_seconds, 1),
        "images_decoded_per_second": round(again["images_decoded"] / decode_seconds, 1),
        "cpus": os.cpu_count(),
    }
    return publish("images_bench", args, {f"scale {args.scale}, {args.days} days": result})


if __name__ == "__main__":
    main()
