"""The 60-day scenario of tests/test_daily.py with the daily job run on every one of the 60 days.

The simulator's clock (seed 4 from 2024-03-04, scale 0.01: a few records a day; late approvals,
status changes, a withdrawal; faults on every kind of request) advances a day at a time and
``daily --env test --since-last-run`` runs in-process through ``ttb_spark.cli.main`` after each
step, the simulated today given as ``TTB_PARTITION_END_DATE``. Then one more run on the last day.
Prints per-run wall times, whether gold equals the registry's public truth as of the last day,
whether ``fact_status_changes`` holds exactly the observable changes, and the tables whose data
the extra run changed (none expected).

``--sweep-day N`` kills the run of day N (offset from ``--start``; 50 is the one that removes the COLA
withdrawn that day) after each of its writes in turn (``--stride K``: every K-th), each time from a copy of
the lakehouse and raw store as the run before left them, then runs it again and compares every table
with what the uninterrupted run wrote: the kill is swept over every Delta commit and raw write of a run
that removes COLAs.

``--kill-seed S`` then replays the schedule into a second lakehouse, where the run of one day drawn
from S is a subprocess killed (SIGKILL to its process group: driver, JVM, Python workers) once it
has made N writes — raw-store objects and Delta commits, N drawn from S between 1 and the writes
that day's run made in the first schedule — so the kill lands between or inside commits of any
stage. The schedule then goes on (that day's run again, then the rest), and every bronze, silver
and gold table of the two lakehouses is compared (:func:`table_differences`): none may differ.

``--no-faults``: a healthy registry; with ``--days 61 --every 60`` the second run is a catch-up after 60 days
paused, and the figures of the last run say what it cost (requests per stored page, one listing pass or not).

``--commit-points`` sweeps fewer points (:func:`commit_points`): after each Delta commit, raw manifest or
``_COMPLETE`` marker, and once inside each stretch of page writes between two.

Run: ``.venv/bin/python -m bench.daily_bench [--days 60] [--every 1] [--no-faults] [--kill-seed 7] [--sweep-day 50 [--stride 1] [--last K] [--skip-last J] [--commit-points]]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.__main__ import table
from ttb_spark import cli, lakehouse, tables
from ttb_spark.registry import search, simulator
from ttb_spark.gold.consolidated import CONSOLIDATED
from ttb_spark.gold.facts import FACT_STATUS_CHANGES

RESULTS = Path(__file__).parent / "results"
FAULTS = {"reset": 0.02, "server_error": 0.03, "rate_limit": 0.02, "truncate": 0.02, "session_timeout": 0.01, "retry_after": 0}
# every run records itself, the manifests it read and (claimed, then released) its run lock
BOOKKEEPING = {"ops.pipeline_runs", "ops.ingested_manifests", "ops.run_locks"}
DAILY = ("daily", "--env", "test", "--since-last-run")
# Columns that differ between two runs of the same schedule by design: run ids, wall-clock times and their days,
# and what a resumed walk records for a page it reused instead of fetching (attempts 0, no HTTP status, no timing).
PER_RUN = re.compile(r"(^|_)run_id$|_at$|^observed_date_key$|^attempts$|^http_status$|^elapsed|^achieved")
RUN_ID_IN_KEY = re.compile(r"run_id=[^/]+")


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.daily_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 3, 4), help="first simulated day")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--every", type=int, default=1, help="run the schedule every N days (the simulated clock still covers each)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--kill-seed", type=int, default=None, help="also replay the schedule with one run killed at a point drawn from this seed")
    parser.add_argument("--sweep-day", type=int, default=None, help="kill the run of this day (offset) after each of its writes in turn")
    parser.add_argument("--stride", type=int, default=1, help="--sweep-day: kill after every K-th write only")
    parser.add_argument("--last", type=int, default=None, help="--sweep-day: only the run's last K writes (silver's and gold's commits)")
    parser.add_argument("--skip-last", type=int, default=0,
                        help="--sweep-day: leave out the run's last J writes (swept before: a long sweep split over sessions)")
    parser.add_argument("--commit-points", action="store_true",
                        help="--sweep-day: kill only after the writes that commit something (a Delta commit, a raw manifest or its "
                             "_COMPLETE) and once inside each stretch of other raw writes between two of them")
    parser.add_argument("--no-faults", action="store_true", help="a registry without faults (what a catch-up costs a healthy registry)")
    return parser.parse_args(argv)


def environment(sim: simulator.RegistrySimulator, raw: Path, lake: Path, start: date) -> dict[str, str]:
    """The ``TTB_*`` variables of a scheduled daily run against ``sim`` (the day itself is set per run)."""
    return {"TTB_USE_SIMULATOR": "false", "TTB_REGISTRY_BASE_URL": sim.base_url, "TTB_RAW_ROOT": str(raw),
            "TTB_LAKEHOUSE_ROOT": str(lake), "TTB_PARTITION_START_DATE": start.isoformat()}


def written(raw: Path, lake: Path) -> set[Path]:
    """What the runs have written so far: raw-store objects and Delta commits of every table."""
    objects = {p for p in raw.rglob("*") if p.is_file()} if raw.exists() else set()
    return objects | set(lake.glob("*/*/_delta_log/*.json"))


def writes(raw: Path, lake: Path) -> int:
    """How many writes :func:`written` finds."""
    return len(written(raw, lake))


# a write after which something is committed: a table version, a raw manifest, the marker that completes it
COMMITS = re.compile(r"_delta_log/\d+\.json$|/manifest\.jsonl$|/_COMPLETE$")


def commit_points(new: Sequence[Path]) -> list[int]:
    """Kill points (1-based write counts) for ``new``, one run's writes in the order made: after each commit
    (:data:`COMMITS`), and after the middle write of each stretch of other writes (pages, search answers, images)
    between two commits. A kill inside such a stretch leaves some of its objects written and no manifest naming them
    yet: one point samples each stretch (a sweep without ``--commit-points`` kills after every write)."""
    points: list[int] = []
    stretch: list[int] = []
    for n, path in enumerate(new, 1):
        if COMMITS.search(path.as_posix()):
            points += stretch[len(stretch) // 2:][:1] + [n]
            stretch = []
        else:
            stretch.append(n)
    return points + stretch[len(stretch) // 2:][:1]


def stored_pages(raw: Path) -> int:
    """Pages in the raw store (one object per page fetched and stored)."""
    return sum(1 for p in (raw / "pages").rglob("*") if p.is_file()) if (raw / "pages").exists() else 0


def last_run_cost(hits: list[Any], pages: int) -> dict[str, Any]:
    """The schedule's last run: registry requests, pages stored, requests per page, and whether every search
    came before the first page fetch (one listing pass; with --every N > chunk days, a catch-up)."""
    searches = [n for n, h in enumerate(hits) if h.data_type == "search"]
    fetches = [n for n, h in enumerate(hits) if h.data_type in ("cola-detail", "certificate")]
    return {"last_run_requests": len(hits), "last_run_searches": len(searches), "last_run_pages_stored": pages,
            "last_run_requests_per_page": round(len(hits) / pages, 3) if pages else None,
            "last_run_lists_before_fetching": bool(searches and fetches and max(searches) < min(fetches))}


def daily(sim: simulator.RegistrySimulator, day: date) -> tuple[float, str]:
    """``daily --since-last-run`` in this process with ``day`` as the simulated today; its wall time and summary."""
    sim.today = day
    os.environ["TTB_PARTITION_END_DATE"] = day.isoformat()
    started = time.monotonic()
    with redirect_stdout(io.StringIO()) as out:
        code = cli.main(list(DAILY))
    if code != 0:
        raise RuntimeError(f"daily {day} exited {code}:\n{out.getvalue()}")
    return time.monotonic() - started, out.getvalue()


def daily_killed(sim: simulator.RegistrySimulator, day: date, after: int, raw: Path, lake: Path, log: Path) -> str:
    """``daily --since-last-run`` for ``day`` in a subprocess (environment of this process), SIGKILLed with its
    whole process group once it has made ``after`` writes; the run's output. Raises if it ends first."""
    sim.today = day
    env = {**os.environ, "TTB_PARTITION_END_DATE": day.isoformat()}
    base = writes(raw, lake)
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "ttb_spark", *DAILY], cwd=log.parent, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while writes(raw, lake) - base < after:
                if proc.poll() is not None:
                    raise RuntimeError(f"the run of {day} ended (status {proc.returncode}) before its write {after}:\n"
                                       + log.read_text(errors="replace")[-3000:])
                time.sleep(0.01)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return log.read_text(errors="replace")


def kill_point(seed: int, writes_per_run: Sequence[int]) -> tuple[int, int]:
    """(index of the run to kill, the write after which to kill it), drawn from ``seed``."""
    rng = random.Random(seed)
    run = rng.randrange(len(writes_per_run))
    return run, rng.randint(1, max(1, writes_per_run[run]))


def compared_tables(spark: Any, root: str) -> dict[str, lakehouse.TableSpec]:
    """The bronze, silver and gold tables under ``root`` that hold data, not per-run logs (keyed by a run id)."""
    return {name: spec for name, spec in sorted(tables.BY_NAME.items())
            if name.split(".")[0] in ("bronze", "silver", "gold") and not any(k.endswith("run_id") for k in spec.keys)
            and lakehouse.table_exists(spark, spec, root)}


def contents(spark: Any, spec: lakehouse.TableSpec, root: str, version: int | None = None, skip_dates: Sequence[date] = ()) -> Any:
    """The table's rows (at ``version``) without what legitimately differs between two runs of one schedule:
    run ids and wall-clock times (:data:`PER_RUN`, and the row hash when it covers them), run ids inside
    raw-store keys, and calendar rows of ``skip_dates`` (observation days are wall-clock days)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import MapType, StringType

    ref = lakehouse.table_ref(spec, root)
    df = spark.sql(f"SELECT * FROM {ref}" + (f" VERSION AS OF {version}" if version is not None else ""))
    if "date" in df.columns and spec.name.endswith("dim_dates"):
        df = df.where(~F.col("date").isin(list(skip_dates)))
    dropped = {c for c in df.columns if PER_RUN.search(c)}
    if dropped & set(spec.hashed_columns):
        dropped.add(lakehouse.ROW_HASH)

    def shaped(c: str) -> Any:
        kind = df.schema[c].dataType
        if isinstance(kind, MapType):
            return F.to_json(c).alias(c)
        if isinstance(kind, StringType) and c.endswith("_key"):
            return F.regexp_replace(c, RUN_ID_IN_KEY.pattern, "run_id=*").alias(c)
        return F.col(c)

    return df.select(*[shaped(c) for c in sorted(set(df.columns) - dropped)])


def observation_days(spark: Any, root: str, version: int | None = None) -> set[date]:
    """The wall-clock days fact_status_changes recorded observations on (they enter dim_dates)."""
    if not lakehouse.table_exists(spark, FACT_STATUS_CHANGES, root):
        return set()
    ref = lakehouse.table_ref(FACT_STATUS_CHANGES, root)
    df = spark.sql(f"SELECT DISTINCT to_date(observed_at) FROM {ref}" + (f" VERSION AS OF {version}" if version is not None else ""))
    return {r[0] for r in df.collect()}


def data_changes(spark: Any, root: str, since: dict[str, int | None]) -> dict[str, list]:
    """Per table (bookkeeping aside), the commits after ``since`` that changed data."""
    changed = {name: lakehouse.data_commits(spark, spec, root, since.get(name)) for name, spec in tables.BY_NAME.items()
               if name not in BOOKKEEPING}
    return {name: commits for name, commits in changed.items() if commits}


def frame_differences(pairs: dict[str, tuple[Any, Any]]) -> dict[str, str]:
    """Per name whose two frames differ (columns, or rows only on one side, duplicates counted): what differs.
    Every pair in one Spark job: each row as JSON text (instants to the microsecond), counted +1 on the
    first side and -1 on the second; a row whose count is not 0 differs."""
    from functools import reduce

    from pyspark.sql import functions as F

    out = {name: f"columns {a.columns} != {b.columns}" for name, (a, b) in pairs.items() if a.columns != b.columns}
    same_shape = {name: ab for name, ab in pairs.items() if name not in out}
    if not same_shape:
        return out
    exact = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX", "timestampNTZFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"}

    def tagged(name: str, df: Any, side: int) -> Any:
        row = F.to_json(F.struct(*df.columns), exact)
        return df.select(F.lit(name).alias("_table"), row.alias("_row"), F.lit(side).alias("_side"))

    sides = [tagged(name, df, side) for name, (a, b) in sorted(same_shape.items()) for df, side in ((a, 1), (b, -1))]
    counted = reduce(lambda x, y: x.unionByName(y), sides).groupBy("_table", "_row").agg(F.sum("_side").alias("_n"))
    found: dict[str, list[tuple[str, int]]] = {}
    for r in counted.where("_n != 0").collect():
        found.setdefault(r["_table"], []).append((r["_row"], int(r["_n"])))
    for name, rows in sorted(found.items()):
        first, second = sum(n for _, n in rows if n > 0), -sum(n for _, n in rows if n < 0)
        out[name] = f"{first} rows only in the first, {second} only in the second, e.g. {min(rows)[0][:500]}"
    return out


def table_differences(spark: Any, expected_root: str, got_root: str, versions: dict[str, int | None] | None = None) -> dict[str, str]:
    """Per table that differs (missing, or rows only on one side, duplicates counted): what differs.
    ``versions`` reads the expected lakehouse as of those table versions (a table absent then: expected absent)."""
    expected = compared_tables(spark, expected_root)
    if versions is not None:
        expected = {n: s for n, s in expected.items() if versions.get(n) is not None}
    got = compared_tables(spark, got_root)
    at: Callable[[str], int | None] = lambda name: None if versions is None else versions[name]  # noqa: E731
    skip = sorted(observation_days(spark, expected_root, at(FACT_STATUS_CHANGES.name) if FACT_STATUS_CHANGES.name in expected else None)
                  | observation_days(spark, got_root))
    out = {name: "missing" for name in sorted(set(expected) ^ set(got))}
    pairs = {name: (contents(spark, expected[name], expected_root, at(name), skip), contents(spark, got[name], got_root, None, skip))
             for name in sorted(set(expected) & set(got))}
    return out | frame_differences(pairs)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    days = [args.start + timedelta(days=d) for d in range(0, args.days, args.every)]
    sweep_day = None if args.sweep_day is None else args.start + timedelta(days=args.sweep_day)
    if sweep_day is not None and sweep_day not in days:
        raise SystemExit(f"--sweep-day {args.sweep_day} is not a day the schedule runs (every {args.every} days)")
    last = days[-1]
    from ttb_spark.settings import load_settings
    from ttb_spark.spark import get_spark

    spark = get_spark(load_settings("test"), app_name="bench-daily")
    saved = {k: os.environ.get(k) for k in ("TTB_USE_SIMULATOR", "TTB_REGISTRY_BASE_URL", "TTB_RAW_ROOT", "TTB_LAKEHOUSE_ROOT",
                                            "TTB_PARTITION_START_DATE", "TTB_PARTITION_END_DATE")}
    crash: dict[str, Any] = {}
    try:
        faults = {} if args.no_faults else FAULTS
        with tempfile.TemporaryDirectory() as tmp, simulator.running(seed=args.seed, scale=args.scale, faults=faults, today=args.start) as sim:
            raw, lake = Path(tmp) / "raw", Path(tmp) / "lakehouse"
            root = str(lake)
            os.environ.update(environment(sim, raw, lake, args.start))
            started = time.monotonic()
            seconds, made = [], []
            sweep: dict[str, Any] = {}
            for day in days:
                if day == sweep_day:
                    sweep["snapshot"] = Path(tmp) / "before-sweep"
                    shutil.copytree(Path(tmp), sweep["snapshot"], ignore=shutil.ignore_patterns("before-sweep"))
                before, hits_before, pages_before = written(raw, lake), len(sim.hits), stored_pages(raw)
                took, text = daily(sim, day)
                seconds.append(took)
                new = sorted(written(raw, lake) - before, key=lambda p: p.stat().st_mtime_ns)
                made.append(len(new))
                last_run = {"hits": sim.hits[hits_before:], "pages": stored_pages(raw) - pages_before}
                if day == sweep_day:
                    sweep |= {"day": day, "summary": text, "writes": made[-1], "commit_points": commit_points(new),
                              "versions": {n: lakehouse.current_version(spark, s, root) for n, s in tables.BY_NAME.items()}}
            total = time.monotonic() - started
            truth = {r.ttb_id: sim.registry.state(r.ttb_id, last).status for r in sim.search(search.Criteria(args.start, last))}
            versions = {n: lakehouse.current_version(spark, s, root) for n, s in tables.BY_NAME.items()}
            again, _ = daily(sim, last)
            changed = data_changes(spark, root, versions)
            gold = {r.ttb_id: r.status for r in lakehouse.read_table(spark, CONSOLIDATED, root).select("ttb_id", "status").collect()}
            history = {(r.ttb_id, r.change_type, r.previous_status, r.status) for r in lakehouse.read_table(spark, FACT_STATUS_CHANGES, root).collect()}
            expected = sim.registry.observable_history({h[0] for h in history} | set(truth), args.start, days)
            requests = len(sim.hits)
            if args.kill_seed is not None:
                crash = replay_with_kill(spark, sim, Path(tmp) / "crash", days, made, args.kill_seed, args.start, root)
            if sweep:
                crash |= sweep_kills(spark, sim, sweep, Path(tmp) / "sweep", args.stride, args.last, args.start, root, args.skip_last,
                                     args.commit_points)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    result: dict[str, Any] = {
        "days": args.days, "every": args.every, "seed": args.seed, "scale": args.scale, "runs": len(days) + 1,
        "public_colas": len(truth), "gold_equals_truth": gold == truth,
        "history_rows": len(history), "history_equals_observable": history == expected,
        "status_changes": sum(1 for h in history if h[1] == "change"), "withdrawn": sum(1 for h in history if h[1] == "withdrawn"),
        "extra_run_tables_changed": sorted(changed), "registry_requests": requests,
        "seconds_total": round(total, 1), "seconds_per_run_median": round(statistics.median(seconds), 1),
        "seconds_first_run": round(seconds[0], 1), "seconds_slowest_run": round(max(seconds), 1), "seconds_extra_run": round(again, 1),
        "writes_per_run_median": statistics.median(made), **last_run_cost(last_run["hits"], last_run["pages"]), **crash,
        "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1),
    }
    print(table({"daily_bench": result}))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "daily_bench.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def replay_with_kill(spark: Any, sim: simulator.RegistrySimulator, where: Path, days: list[date], made: list[int], seed: int,
                     start: date, expected_root: str) -> dict[str, Any]:
    """The schedule again under ``where``, the run drawn by :func:`kill_point` killed and rerun; how it compares."""
    raw, lake = where / "raw", where / "lakehouse"
    os.environ.update(environment(sim, raw, lake, start))
    killed, after = kill_point(seed, made)
    started = time.monotonic()
    for index, day in enumerate(days):
        if index == killed:
            daily_killed(sim, day, after, raw, lake, where / "killed.log")
        daily(sim, day)
    differences = table_differences(spark, expected_root, str(lake))
    return {"kill_seed": seed, "killed_day": days[killed].isoformat(), "killed_after_writes": after, "writes_that_day": made[killed],
            "crash_replay_seconds": round(time.monotonic() - started, 1), "crash_tables_differing": differences or "none"}



def sweep_kills(spark: Any, sim: simulator.RegistrySimulator, run: dict[str, Any], where: Path, stride: int, last: int | None,
                start: date, expected_root: str, skip_last: int = 0, only_commits: bool = False) -> dict[str, Any]:
    """The run of ``run["day"]``, from its ``snapshot`` each time, SIGKILLed after its 1st, (1 + stride)th, ...
    write (of its ``last`` writes only, if given; none of its last ``skip_last``; with ``only_commits``, of its
    :func:`commit_points` only) and run again; the kill points after which any table differs from the uninterrupted
    run's tables. Each point's outcome is printed as it is known."""
    differing: dict[int, Any] = {}
    ended_first: list[int] = []
    window = range(max(1, run["writes"] - last + 1) if last else 1, run["writes"] - skip_last + 1)
    points = [n for n in (run["commit_points"] if only_commits else window) if n in window][::stride]
    print(f"sweep {run['day']}: {len(points)} kill points of {run['writes']} writes: {points}", flush=True)
    started = time.monotonic()
    for after in points:
        shutil.rmtree(where, ignore_errors=True)
        shutil.copytree(run["snapshot"], where)
        raw, lake = where / "raw", where / "lakehouse"
        os.environ.update(environment(sim, raw, lake, start))
        try:
            daily_killed(sim, run["day"], after, raw, lake, where.parent / "sweep-killed.log")
        except RuntimeError:  # this time the run made fewer writes (fewer faults to retry): it ended, not killed
            ended_first.append(after)
        _, rerun = daily(sim, run["day"])
        differences = table_differences(spark, expected_root, str(lake), run["versions"])
        if differences:  # what the killed run and its rerun said, kept beside the sweep for the diagnosis
            differing[after] = differences
            RESULTS.mkdir(exist_ok=True)
            shutil.copy(where.parent / "sweep-killed.log", RESULTS / f"sweep-{run['day']}-{after}-killed.log")
            (RESULTS / f"sweep-{run['day']}-{after}-rerun.log").write_text(rerun)
        print(f"sweep {run['day']}: killed after write {after} of {run['writes']}: "
              + ("ended before it" if after in ended_first else "rerun") + f", tables differing: {differences or 'none'}", flush=True)
    removed = re.search(r"colas_removed=(\d+)", run["summary"])
    return {"sweep_day": run["day"].isoformat(), "sweep_colas_removed": int(removed[1]) if removed else None,
            "sweep_writes_that_day": run["writes"], "sweep_kill_points": len(points), "sweep_ended_before_kill": ended_first,
            "sweep_seconds": round(time.monotonic() - started, 1), "sweep_tables_differing": differing or "none"}


if __name__ == "__main__":
    main(sys.argv[1:])
