"""The lakehouse at real volume: one more working day merged bronze -> silver -> gold into lakehouses
holding 1, 90 and 365 days, side by side in one run.

Volume is the simulator's ``registry`` profile (scale 1.0: 600-1,300 e-filed COLAs a weekday, a
few on paper, 7,200 permits with Zipf-distributed filings, tens of thousands of brands, every
class/type and origin). Each base lakehouse is bulk-built: its receipt days' pages rendered
straight into bronze by :mod:`ttb_spark.synthetic` (one commit), then one change-driven silver
run and one change-driven gold run over all of them. The measured increment is the daily path:
the extra day (the same weekday for every size, right after each base) is fetched once over HTTP
from the loopback simulator into a shared raw store, then for each lakehouse the ``bronze`` stage
over that day and the change-driven (``--since-last-run``) ``silver`` and ``gold`` stages. Per
lakehouse it prints wall time (per stage), peak memory (highest summed RSS of this process tree:
driver, Spark JVM, Python workers), Delta commits, files added and removed per table, and total
files per table after the increment. Run: ``.venv/bin/python -m bench.volume_bench [--days 1,90,365]``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Sequence

from bench.lakehouse_bench import PeakMemory, _settings, machine, sized_args
from ttb_spark import lakehouse, synthetic, tables
from ttb_spark.ops import runner
from ttb_spark.registry import simulator

RESULTS = Path(__file__).parent / "results"
EXTRA_DAY = date(2025, 1, 7)  # a Tuesday: the day merged into every lakehouse
STAGES = ("bronze", "silver", "gold")
SEED = 0
MAX_SEQUENCE = 5_000
FILE_METRICS = {  # operationMetrics naming files written/removed, per operation family
    "added": ("numTargetFilesAdded", "numAddedFiles", "numFiles"),
    "removed": ("numTargetFilesRemoved", "numRemovedFiles"),
}


def _versions(spark: Any, root: str) -> dict[str, int | None]:
    return {name: lakehouse.current_version(spark, spec, root) for name, spec in sorted(tables.BY_NAME.items())}


def _table_costs(spark: Any, root: str, before: dict[str, int | None]) -> dict[str, dict[str, int]]:
    """Per table written since ``before``: commits, files added/removed by them, total files now."""
    out = {}
    for name, spec in sorted(tables.BY_NAME.items()):
        if not lakehouse.table_exists(spark, spec, root):
            continue
        ref = lakehouse.table_ref(spec, root)
        history = spark.sql(f"DESCRIBE HISTORY {ref}")
        if before.get(name) is not None:
            history = history.where(f"version > {before[name]}")
        commits = history.select("operationMetrics").collect()
        files = {kind: sum(int(next((m[k] for k in keys if k in m), 0)) for m in (c[0] or {} for c in commits))
                 for kind, keys in FILE_METRICS.items()}  # fmt: skip
        total = int(spark.sql(f"DESCRIBE DETAIL {ref}").first()["numFiles"])
        out[name] = {"commits": len(commits), "files_added": files["added"], "files_removed": files["removed"], "files_total": total}
    return out


def _volume_settings(work: Path, url: str, lakehouse_name: str) -> Any:
    """The lakehouse bench's settings, the walk reaching the sequence numbers of a real-volume day
    (the simulator's gaps put a 1,300-COLA day's last one near 3,000, past the default 2,000)."""
    settings = _settings(work, url, lakehouse_name)
    extraction = settings.extraction.model_copy(update={"max_sequence_per_batch": MAX_SEQUENCE})
    return settings.model_copy(update={"extraction": extraction})


def _run(spark: Any, settings: Any, scope: runner.Scope, stages: Sequence[str]) -> dict[str, float]:
    seconds = {}
    for stage in stages:
        started = time.monotonic()
        runner.run_stage(stage, spark, settings, scope)
        seconds[stage] = round(time.monotonic() - started, 1)
    return seconds


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, sizes, work = sized_args(argv, "volume_bench", __doc__, "1,90,365", 1.0,
                                   "registry-profile volume multiplier (1.0: a real working day)")
    result: dict[str, Any] = {"machine": machine(), "scale": args.scale, "extra_day": EXTRA_DAY.isoformat(), "lakehouses": []}
    from ttb_spark.spark import get_spark

    try:
        with simulator.serving(seed=SEED, scale=args.scale, profile="registry") as url:
            base = _volume_settings(work, url, "unused")
            spark = get_spark(base, app_name="ttb_spark-volume-bench")
            day = replace(runner.Scope.from_settings(base), start=EXTRA_DAY, end=EXTRA_DAY)
            started = time.monotonic()
            _run(spark, base, day, ("scrape",))
            result["scrape_seconds"] = round(time.monotonic() - started, 1)
            for days in sizes:
                settings = _volume_settings(work, url, f"lakehouse-{days}d")
                root = settings.pipeline.lakehouse_root
                first, last = EXTRA_DAY - timedelta(days=days), EXTRA_DAY - timedelta(days=1)
                started = time.monotonic()
                pages = synthetic.write(spark, root, first, last, seed=SEED, scale=args.scale)
                generated = time.monotonic() - started
                changed = replace(day, start=first, end=last, since_last_run=True)
                build = _run(spark, settings, changed, ("silver", "gold"))
                before = _versions(spark, root)
                with PeakMemory() as memory:
                    seconds = _run(spark, settings, day, ("bronze",))
                    seconds |= _run(spark, settings, replace(day, since_last_run=True), ("silver", "gold"))
                tables = _table_costs(spark, root, before)
                result["lakehouses"].append({
                    "days": days, "base_pages": pages, "base_generate_seconds": round(generated, 1), "base_build_seconds": build,
                    "increment_seconds": round(sum(seconds.values()), 1), "increment_stage_seconds": seconds,
                    "increment_peak_rss_mb": round(memory.peak_mb), "increment_commits": sum(t["commits"] for t in tables.values()),
                    "tables": tables,
                })  # fmt: skip
                _print(result["lakehouses"][-1])
                _save(result)  # figures so far survive a run stopped before the largest lakehouse
        small = next((lh for lh in result["lakehouses"] if lh["days"] == sizes[0]), None)
        for lh in result["lakehouses"]:
            lh["ratio_to_smallest"] = round(lh["increment_seconds"] / small["increment_seconds"], 2) if small else None
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    _print_side_by_side(result)
    _save(result)
    return result


def _save(result: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "volume_bench.json").write_text(json.dumps(result, indent=2) + "\n")


def _print(lh: dict[str, Any]) -> None:
    print(f"\n{lh['days']}-day lakehouse ({lh['base_pages']} base pages, generated in {lh['base_generate_seconds']} s, "
          f"built in {lh['base_build_seconds']}): one more day {lh['increment_seconds']} s {lh['increment_stage_seconds']}, "
          f"peak {lh['increment_peak_rss_mb']} MB, {lh['increment_commits']} commits", flush=True)


def _print_side_by_side(result: dict[str, Any]) -> None:
    lhs = result["lakehouses"]
    print(f"\nmachine: {result['machine']}\nscale {result['scale']} (registry profile); extra day {result['extra_day']}, "
          f"scraped once in {result.get('scrape_seconds')} s")
    heads = [f"{lh['days']}d" for lh in lhs]
    print(f"{'one more day':<34}" + "".join(f"{h:>22}" for h in heads))
    for label, key in (("wall seconds", "increment_seconds"), ("ratio to smallest", "ratio_to_smallest"),
                       ("peak RSS MB", "increment_peak_rss_mb"), ("Delta commits", "increment_commits")):
        print(f"{label:<34}" + "".join(f"{lh.get(key)!s:>22}" for lh in lhs))
    for stage in STAGES:
        print(f"{'  ' + stage + ' seconds':<34}" + "".join(f"{lh['increment_stage_seconds'].get(stage)!s:>22}" for lh in lhs))
    print(f"{'table: commits / added / removed / total files':<34}")
    names = sorted({n for lh in lhs for n in lh["tables"]})
    for name in names:
        cells = []
        for lh in lhs:
            t = lh["tables"].get(name)
            cells.append(f"{t['commits']}/{t['files_added']}/{t['files_removed']}/{t['files_total']}" if t else "-")
        print(f"{'  ' + name:<34}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
