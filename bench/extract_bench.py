"""How to run the parser on executors: mapInArrow vs plain UDF vs Arrow UDF vs pandas UDF vs mapInPandas vs RDD mapPartitions.

Every variant applies the same per-page function (silver.parse_one) to the same cached frame of
real saved pages (replicated to ``--pages``) and is forced with a ``noop`` write; the table shows
the best of ``--repeat`` runs as pages/s of wall time and pages per CPU-second of every process
doing the work (driver, JVM, Python workers: "per core", which holds on a shared, loaded machine
too), beside the parser alone (pure Python, same pages, its own CPU time): the ceiling. ``silver.parse_results`` uses the winner among the
variants that run over Spark Connect (all but the RDD one).

    .venv/bin/python -m bench.extract_bench --pages 720 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from pyspark.sql.types import StringType, StructField, StructType

import ttb_spark
from ttb_spark import silver

PAGES = Path(ttb_spark.__file__).resolve().parent / "data" / "pages"
FILES = {"cola-detail": "detail.html", "certificate": "certificate.html"}
RESULTS = Path(__file__).resolve().parent / "results"


def real_pages() -> list[tuple[str, str, str]]:
    """(ttb_id, data_type, html as bronze keeps it) for every saved record page."""
    rows = []
    for folder in sorted(p for p in PAGES.iterdir() if p.name.isdigit()):
        for data_type, name in FILES.items():
            rows.append((folder.name, data_type, (folder / name).read_bytes().decode("latin-1")))
    return rows


def _udf(df: Any) -> Any:
    from pyspark.sql import functions as F

    parse = F.udf(lambda h, t, d: silver.parse_one(h, t, d), silver.PARSE_RESULT)
    return df.select("ttb_id", "data_type", parse("html", "ttb_id", "data_type").alias("_p")).select("ttb_id", "data_type", "_p.*")


def _arrow_udf(df: Any) -> Any:
    from pyspark.sql import functions as F

    parse = F.udf(lambda h, t, d: silver.parse_one(h, t, d), silver.PARSE_RESULT, useArrow=True)
    return df.select("ttb_id", "data_type", parse("html", "ttb_id", "data_type").alias("_p")).select("ttb_id", "data_type", "_p.*")


def _pandas_udf(df: Any) -> Any:
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql.functions import PandasUDFType

    @F.pandas_udf(silver.PARSE_RESULT, PandasUDFType.SCALAR)
    def parse(html, ttb_id, data_type):  # type: ignore[no-untyped-def]
        out = [silver.parse_one(h, t, d) for h, t, d in zip(html, ttb_id, data_type)]
        return pd.DataFrame(out, columns=silver.PARSE_RESULT.fieldNames())

    return df.select("ttb_id", "data_type", parse("html", "ttb_id", "data_type").alias("_p")).select("ttb_id", "data_type", "_p.*")


def _map_in_pandas(df: Any) -> Any:
    schema = StructType([StructField("ttb_id", StringType()), StructField("data_type", StringType()), *silver.PARSE_RESULT.fields])

    def parse(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        for b in batches:
            out = [(t, d, *silver.parse_one(h, t, d)) for h, t, d in zip(b["html"], b["ttb_id"], b["data_type"])]
            yield pd.DataFrame(out, columns=schema.fieldNames())

    return df.mapInPandas(parse, schema)


def _map_partitions(df: Any) -> Any:
    """Rows through an RDD (pickled Row objects); classic sessions only."""
    schema = StructType([StructField("ttb_id", StringType()), StructField("data_type", StringType()), *silver.PARSE_RESULT.fields])
    rdd = df.rdd.mapPartitions(lambda rows: ((r["ttb_id"], r["data_type"], *silver.parse_one(r["html"], r["ttb_id"], r["data_type"])) for r in rows))
    return df.sparkSession.createDataFrame(rdd, schema)


def _map_in_arrow(df: Any) -> Any:
    return silver.parse_results(df)


VARIANTS: dict[str, Callable[[Any], Any]] = {
    "map_in_arrow": _map_in_arrow,  # what silver uses
    "udf": _udf,
    "arrow_udf": _arrow_udf,
    "pandas_udf": _pandas_udf,
    "map_in_pandas": _map_in_pandas,
    "rdd_map_partitions": _map_partitions,
}


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and all its descendants (the
    Spark JVM and its Python workers), from /proc; finished children count through cutime/cstime."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(v) for v in fields[11:15]) / tick
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(times.get(pid, 0.0) for pid in tree)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench.extract_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=720, help="pages to parse (the 36 saved ones, replicated)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)

    from ttb_spark.settings import load_settings
    from ttb_spark.spark import get_spark

    spark = get_spark(load_settings("test"), app_name="bench-extract")
    base = real_pages()
    rows = [base[i % len(base)] for i in range(args.pages)]
    started = time.process_time()
    statuses = [silver.parse_one(h, t, d)[0] for t, d, h in rows]
    python_s = time.process_time() - started
    assert set(statuses) == {silver.PARSED}, f"saved pages should all parse: {set(statuses)}"

    df = spark.createDataFrame(rows, "ttb_id string, data_type string, html string").repartition(args.partitions).cache()
    df.count()
    results: dict[str, Any] = {"pages": args.pages, "partitions": args.partitions, "cores": spark.sparkContext.defaultParallelism,
                               "python_cpu_s": round(python_s, 3), "variants": {}}
    for name in args.variants.split(","):
        times, cpus, error = [], [], None
        for _ in range(args.repeat):
            try:
                out = VARIANTS[name](df)
                t0, cpu0 = time.perf_counter(), tree_cpu_seconds()
                out.write.format("noop").mode("overwrite").save()
                times.append(time.perf_counter() - t0)
                cpus.append(tree_cpu_seconds() - cpu0)
            except Exception as exc:  # noqa: BLE001 - a variant that cannot run here is reported, not fatal
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                break
        results["variants"][name] = {
            "best_s": round(min(times), 3) if times else None,
            "median_s": round(statistics.median(times), 3) if times else None,
            "pages_per_s": round(args.pages / min(times), 1) if times else None,
            "pages_per_s_per_core": round(args.pages / min(cpus), 1) if cpus else None,
            "error": error,
        }
    df.unpersist()

    cores = results["cores"]
    results["python_pages_per_s_per_core"] = round(args.pages / python_s, 1)
    print(f"{args.pages} pages, {args.partitions} partitions, {cores} cores")
    print(f"{'variant':<20} {'best s':>8} {'median s':>9} {'pages/s':>8} {'per core':>9}")
    print(f"{'parser alone (CPU)':<20} {python_s:>8.2f} {'':>9} {'':>8} {args.pages / python_s:>9.1f}")
    for name, r in results["variants"].items():
        if r["error"]:
            print(f"{name:<20} failed: {r['error']}")
        else:
            print(f"{name:<20} {r['best_s']:>8.2f} {r['median_s']:>9.2f} {r['pages_per_s']:>8.1f} {r['pages_per_s_per_core']:>9.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "extract_bench.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
