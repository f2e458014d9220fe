"""End to end: the command line over the registry simulator, local Spark and Delta.

The whole pipeline for two simulated receipt days; the same run twice gives identical tables;
a crash (the process killed) inside each stage followed by a rerun gives the clean run's tables;
a day scraped with faults keeps every public ID and stores no error page; bad settings and
arguments stop with one line and touch nothing. Volume is kept tiny (scale 0.02: a handful of
records a day) so the file runs in a few minutes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from bench.daily_bench import PER_RUN, frame_differences, table_differences
from ttb_spark import cli, lakehouse, tables

from ttb_spark.ops import audit

from ttb_spark.registry import parse, simulator
from ttb_spark.partitions import date_range
from ttb_spark.raw.storage import open_store

REPO = Path(__file__).resolve().parents[1]
START, END = "2024-01-02", "2024-01-03"
METHODS = "001,002"
SCALE = 0.02
PER_WALK = PER_RUN  # columns that differ between two separate walks by design


@pytest.fixture(scope="module")
def registry():
    with simulator.running(scale=SCALE) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _no_embedded_simulator(monkeypatch):
    """The jobs talk to this module's simulator (its URL passed as --registry-url)."""
    monkeypatch.setenv("TTB_USE_SIMULATOR", "false")


def _argv(job: str, root: Path, url: str, *extra: str, start: str = START, end: str = END, methods: str = METHODS) -> list[str]:
    return [job, "--env", "test", "--start", start, "--end", end, "--receipt-methods", methods, "--registry-url", url,
            "--raw-root", str(root / "raw"), "--lakehouse-root", str(root / "lakehouse"), *extra]


def _tables(spark, root: Path) -> dict[str, lakehouse.TableSpec]:
    """The declared bronze/silver/gold tables that exist under ``root`` (per-run logs keyed by run_id left out)."""
    lake = str(root / "lakehouse")
    return {
        name: spec for name, spec in sorted(tables.BY_NAME.items())
        if name.split(".")[0] in ("bronze", "silver", "gold") and "run_id" not in spec.keys
        and lakehouse.table_exists(spark, spec, lake)
    }


def _frame(spark, spec: lakehouse.TableSpec, root: Path, drop: Callable[[str], bool] = lambda c: False, version: int | None = None):
    """The table's rows under ``root``/lakehouse (at ``version``), ``drop``ped columns left out."""
    ref = lakehouse.table_ref(spec, str(root / "lakehouse"))
    return _shaped(spark.sql(f"SELECT * FROM {ref}" + (f" VERSION AS OF {version}" if version is not None else "")), spec, drop)


def _shaped(df, spec: lakehouse.TableSpec, drop: Callable[[str], bool]):
    """``df`` with ``drop``ped columns (and a row hash covering them) left out, columns sorted, maps as JSON."""
    dropped = {c for c in df.columns if drop(c)}
    if dropped & set(spec.hashed_columns):
        dropped.add(lakehouse.ROW_HASH)  # the hash covers a dropped column
    cols = [F.to_json(c).alias(c) if isinstance(df.schema[c].dataType, MapType) else F.col(c) for c in sorted(set(df.columns) - dropped)]
    return df.select(*cols)


def _version(spark, spec, root: Path) -> int:
    return lakehouse.current_version(spark, spec, str(root / "lakehouse"))


@pytest.fixture(scope="module")
def clean(spark, registry, tmp_path_factory) -> dict[str, Any]:
    """One clean pipeline run over two days, writing its report as ``make demo``'s does: its root, arguments,
    exit status and printed output."""
    root = tmp_path_factory.mktemp("clean")
    argv = _argv("walk", root, registry.base_url)
    mp = pytest.MonkeyPatch()
    mp.setenv("TTB_USE_SIMULATOR", "false")
    mp.setenv("TTB_REPORT_AFTER_RUN", "true")
    code, out, err = _capture(lambda: cli.main(argv))
    mp.undo()
    return {"root": root, "argv": argv, "out": out, "err": err, "code": code}


def _capture(call: Callable[[], int]) -> tuple[int, str, str]:
    """Run ``call`` with stdout/stderr captured to files (module-scoped fixtures cannot use capsys)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            code = call()
        finally:
            sys.stdout, sys.stderr = saved
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read()


def test_pipeline_builds_every_layer_and_audits_the_run(spark, clean, registry):
    assert clean["code"] == 0, clean["err"][-3000:]
    out = clean["out"]
    assert "ttb_spark walk: SUCCEEDED" in out
    assert re.search(r"^  rejects\s+0 page\(s\) of 2024-01-02..2024-01-03 quarantined", out, re.M), out
    for stage in ("scrape", "bronze", "silver", "gold"):
        assert re.search(rf"^  {stage}\s+\w+=\d+", out, re.M), out
        assert f"{stage}: start" in clean["err"] and f"{stage}: done" in clean["err"]
    root = clean["root"]
    tables = _tables(spark, root)
    assert {"bronze.pages", "silver.cola_details", "silver.cola_certificates"} <= set(tables)
    assert any(name.startswith("gold.") for name in tables)
    (run,) = lakehouse.read_table(spark, audit.PIPELINE_RUNS, str(root / "lakehouse")).collect()
    assert run.status == "succeeded" and run.job == "walk" and set(run.counts) == {"scrape", "bronze", "silver", "gold"}
    assert f"run_id = '{run.run_id}'" in out
    public = registry.public_ids(list(date_range(_date(START), _date(END))), METHODS.split(","))
    details = {r.ttb_id for r in _frame(spark, tables["silver.cola_details"], root).select("ttb_id").collect()}
    assert public and public <= details


def test_the_pipelines_report_holds_golds_numbers(spark, clean):
    """The demo's command (``pipeline`` over receipt dates) ends by writing the report of its range's weeks."""
    from test_report import assert_report_holds_golds_numbers

    written = [line.split(None, 1)[1] for line in clean["out"].splitlines() if line.startswith("  report ")]
    assert len(written) == 1 and "/reports/ttb-report_2024-01-01_" in written[0], clean["out"]  # from START's ISO week
    with open(written[0], encoding="utf-8") as page:
        assert_report_holds_golds_numbers(spark, str(clean["root"] / "lakehouse"), written[0], page.read())


def _date(text: str):
    from datetime import date

    return date.fromisoformat(text)


def test_same_run_twice_gives_identical_tables(spark, clean):
    root = clean["root"]
    tables = _tables(spark, root)
    before = {name: _version(spark, spec, root) for name, spec in tables.items()}
    code, _, err = _capture(lambda: cli.main(clean["argv"]))
    assert code == 0, err[-3000:]
    assert set(_tables(spark, root)) == set(tables)
    assert frame_differences({name: (_frame(spark, spec, root, version=before[name]), _frame(spark, spec, root))
                              for name, spec in tables.items()}) == {}
    runs = lakehouse.read_table(spark, audit.PIPELINE_RUNS, str(root / "lakehouse")).collect()
    assert sorted(r.status for r in runs) == ["succeeded", "succeeded"]


def _comparable(value: Any) -> Any:
    """An Arrow value in one form whoever wrote it: instants as UTC ISO text, containers recursively."""
    from datetime import datetime, timezone

    if isinstance(value, datetime):
        return (value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, dict):
        return tuple(sorted((k, _comparable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(v) for v in value)
    return value


def test_gold_tables_read_the_same_with_delta_rs(spark, clean):
    """Analysts read gold with delta-rs (the `deltalake` package, also under Polars and DuckDB): every
    gold table of the run reads there, whatever table features are on, with the rows Spark reads."""
    from deltalake import DeltaTable

    gold = {name: spec for name, spec in _tables(spark, clean["root"]).items() if name.startswith("gold.")}
    assert gold
    for name, spec in gold.items():
        table = DeltaTable(spec.path(str(clean["root"] / "lakehouse")))
        protocol = table.protocol()
        try:
            theirs = table.to_pyarrow_table()
        except Exception as exc:  # name the features delta-rs was given
            pytest.fail(f"{name}: delta-rs cannot read it: reader v{protocol.min_reader_version} "
                        f"features {protocol.reader_features}, writer features {protocol.writer_features}: {exc}")
        ours = spark.table(lakehouse.table_ref(spec, str(clean["root"] / "lakehouse"))).toArrow()
        assert sorted(theirs.column_names) == sorted(ours.column_names), name
        rows = [sorted(map(repr, (_comparable(tuple(r[c] for c in ours.column_names)) for r in t.to_pylist()))) for t in (theirs, ours)]
        assert rows[0] == rows[1], f"{name}: delta-rs and Spark read different rows ({len(rows[0])} vs {len(rows[1])})"


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 600) -> None:
    """Kill the job's whole process group (driver, JVM, Python workers) once ``ready()`` holds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the job ended (status {proc.returncode}) before the crash point"
        assert time.monotonic() < deadline, "crash point not reached"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _watch(log: Path, stage: str, files: Callable[[], set[Path]]) -> Callable[[], bool]:
    """Ready once ``stage`` has started (its progress line is in the log) and a new file has appeared since."""
    seen: dict[str, set[Path]] = {}

    def ready() -> bool:
        if "base" not in seen:
            if f"] {stage}: start" in log.read_text(errors="replace"):
                seen["base"] = files()
            return False
        return bool(files() - seen["base"])

    return ready


def test_crash_in_each_stage_then_rerun_gives_the_clean_tables(spark, clean, registry, tmp_path):
    """The process is killed inside scrape (after a partition completed), then inside bronze, silver and
    gold (at the stage's first Delta commit); a final rerun must give the clean run's tables."""
    argv = _argv("walk", tmp_path, registry.base_url)
    env = {**os.environ, "TTB_USE_SIMULATOR": "false"}
    watched: dict[str, Callable[[], set[Path]]] = {
        "scrape": lambda: set((tmp_path / "raw" / "manifests").glob("*/*/_COMPLETE")),
        **{layer: (lambda layer=layer: set((tmp_path / "lakehouse" / layer).glob("*/_delta_log/*.json"))) for layer in ("bronze", "silver", "gold")},
    }
    for stage, files in watched.items():
        log = tmp_path / f"crash-{stage}.log"
        with log.open("w") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "ttb_spark", *argv], cwd=tmp_path, env=env,
                                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
            _kill_when(proc, _watch(log, stage, files))
        text = log.read_text(errors="replace")
        assert proc.returncode == -signal.SIGKILL, text[-3000:]
        assert f"] {stage}: done" not in text, f"killed after {stage} had finished"
    code, _, err = _capture(lambda: cli.main(argv))
    assert code == 0, err[-3000:]

    assert set(_tables(spark, tmp_path)) == set(_tables(spark, clean["root"]))
    # per-walk columns aside, and the calendar rows of the days the walks ran on (a walk across midnight, UTC, has one more)
    assert table_differences(spark, str(clean["root"] / "lakehouse"), str(tmp_path / "lakehouse")) == {}
    statuses = sorted(r.status for r in lakehouse.read_table(spark, audit.PIPELINE_RUNS, str(tmp_path / "lakehouse")).collect())
    assert statuses == ["running"] * 4 + ["succeeded"]  # the killed runs never got to record an end


def test_bronze_to_gold_over_spark_connect_in_catalog_mode_gives_the_clean_tables(spark, clean, tmp_path):
    """The stages after the scrape over Spark Connect (DataFrame API only: what Databricks standard access
    mode, serverless and Databricks Connect allow) with every table a managed table of a catalog
    (Unity Catalog mode; here Spark's session catalog): bronze, then analytics, over the clean run's
    raw store, must give the clean run's tables. In a subprocess: this process holds the suite's
    classic SparkContext, and TTB_SPARK_REMOTE=local[2] starts a local Connect server with Delta."""
    warehouse = tmp_path / "warehouse"
    env = {**os.environ, "TTB_USE_SIMULATOR": "false", "TTB_SPARK_REMOTE": "local[2]", "TTB_CATALOG": "spark_catalog",
           "TTB_SCHEMA_PREFIX": "ttb_", "TTB_SPARK_WAREHOUSE_DIR": str(warehouse)}
    jobs = [[job, *clean["argv"][1:]] for job in ("bronze", "analytics")]
    script = f"import sys; from ttb_spark import cli; sys.exit(max(cli.main(argv) for argv in {jobs!r}))"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    for job in ("bronze", "analytics"):
        assert f"{job}: Spark 4.1.1, Spark Connect session" in done.stderr
        assert f"ttb_spark {job}: SUCCEEDED" in done.stdout
    assert "tables    spark_catalog.ttb_<layer>.<table>" in done.stdout
    assert "audit     spark_catalog.ttb_ops.pipeline_runs" in done.stdout

    # the subprocess's session catalog is gone with it; its managed tables stay at <warehouse>/<schema>.db/<table>
    def connect(name: str):
        layer, table = name.split(".")
        return spark.read.format("delta").load(str(warehouse / f"ttb_{layer}.db" / table))

    assert frame_differences({name: (_frame(spark, spec, clean["root"], PER_WALK.search), _shaped(connect(name), spec, PER_WALK.search))
                              for name, spec in _tables(spark, clean["root"]).items()}) == {}
    assert {p.name for p in warehouse.iterdir()} == {"ttb_bronze.db", "ttb_silver.db", "ttb_gold.db", "ttb_ops.db"}


def test_faulty_day_keeps_every_public_id_and_stores_no_error_page(spark, tmp_path):
    """The raw job (scrape + bronze) for a day served with every kind of fault."""
    faults = {"reset": 0.1, "server_error": 0.1, "truncate": 0.1, "session_timeout": 0.05, "captcha": 0.1,
              "rate_limit": 0.03, "retry_after": 1, "first_hits": 2}
    with simulator.running(scale=SCALE, seed=7, faults=faults) as sim:
        code, _, err = _capture(lambda: cli.main(_argv("raw", tmp_path, sim.base_url, start=START, end=START, methods="001")))
        hits = sim.hits
        public = set(sim.registry.public_ids(_date(START), "001"))
    assert code == 0, err[-3000:]
    injected = {h.answer for h in hits} - {"page", "not_found"}
    assert {"reset", "server_error", "truncate", "captcha"} <= injected, injected

    root = str(tmp_path / "lakehouse")
    pages = lakehouse.read_table(spark, tables.BY_NAME["bronze.pages"], root).select("ttb_id", "data_type", "source_key").collect()
    for data_type in ("cola-detail", "certificate"):
        assert {p.ttb_id for p in pages if p.data_type == data_type} == public, data_type
    store = open_store(str(tmp_path / "raw"))
    stored = [k for k in store.list("pages/") if k.endswith(".html")]
    assert len(stored) == len(pages) == 2 * len(public)
    for key in stored:
        ttb_id = Path(key).stem
        kind = "detail" if "cola-detail" in key else "certificate"
        assert parse.classify(store.get(key), ttb_id, kind).kind == kind, key


@pytest.mark.parametrize(
    ("command", "env", "named"),
    [
        ([sys.executable, "-m", "ttb_spark", "pipeline", "--receipt-methods", "001,009"], {}, "TTB_RECEIPT_METHODS"),
        ([sys.executable, "-m", "ttb_spark", "pipeline"], {"TTB_MAX_REQUESTS_PER_SECOND": "0"}, "TTB_MAX_REQUESTS_PER_SECOND"),
        ([sys.executable, "-m", "ttb_spark", "analytics", "--partition", "2024-13-01|001-cola-detail"], {}, "--partition"),
        ([str(REPO / "spark-submit.sh"), "pipeline", "--start", "2024-01-05", "--end", "2024-01-01"], {}, "TTB_PARTITION_END_DATE"),
        ([str(REPO / "spark-submit.sh"), "backfill"], {}, "unknown job 'backfill'"),
    ],
    ids=["bad-argument", "bad-setting", "bad-partition", "spark-submit-bad-range", "spark-submit-unknown-job"],
)
def test_bad_settings_and_arguments_stop_with_one_line_touching_nothing(tmp_path, command, env, named):
    roots = ["--raw-root", str(tmp_path / "raw"), "--lakehouse-root", str(tmp_path / "lakehouse")]
    argv = command + (roots if "unknown" not in named else [])
    out = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env={**os.environ, **env}, timeout=300)
    assert out.returncode != 0
    # spark-submit passes the Python driver's stderr on through its stdout: look at both.
    ours = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith(("ttb_spark", "spark-submit.sh"))]
    assert len(ours) == 1 and named in ours[0] and "error" in ours[0], (out.stdout + out.stderr)[-2000:]
    if command[0] == sys.executable:
        assert out.stderr.count("\n") == 1, out.stderr  # nothing else: no Spark started
    assert not (tmp_path / "raw").exists() and not (tmp_path / "lakehouse").exists()
