"""Runs side by side on one lakehouse: the run lock (``ops.run_locks``) in-process on real Delta,
then two real job processes over disjoint dates (both succeed), with nothing lost or duplicated, and a job
over dates another run holds (exit status 1, naming it; run in this process: the refusal needs no JVM of its own)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from test_e2e import _capture
from ttb_spark import cli, lakehouse, tables

from ttb_spark.ops import audit, locks, runner

from ttb_spark.registry import simulator
from ttb_spark.scope import Scope
from ttb_spark.settings import load_settings

DAY_A, DAY_B = date(2024, 1, 2), date(2024, 1, 3)
METHODS = "001,002"


def _settings(root: Path, **concurrency):
    return load_settings("test", {"pipeline": {"lakehouse_root": str(root)}, "concurrency": concurrency})


def _claim(start: date, end: date, claim: str = locks.DATES) -> locks.Claim:
    return locks.Claim(claim, uuid.uuid4().hex, "pipeline", start, end)


def _plant(spark, root: Path, claim: locks.Claim, host: str, pid: int, heartbeat: datetime, process: str | None = None) -> None:
    """A claim as another run left it (its host, pid, last heartbeat and process identity)."""
    values = {"claim": claim.claim, "run_id": claim.run_id, "job": claim.job, "range_start": claim.start, "range_end": claim.end,
              "host": host, "pid": pid, "acquired_at": heartbeat, "heartbeat_at": heartbeat, "process": process}
    row = tuple(values[f.name] for f in locks.RUN_LOCKS.schema.fields)
    lakehouse.merge_upsert(spark, spark.createDataFrame([row], locks.RUN_LOCKS.schema), locks.RUN_LOCKS, str(root))


def test_overlapping_claims_are_refused_naming_the_holder_disjoint_ones_granted(spark, tmp_path):
    settings = _settings(tmp_path)
    first = _claim(DAY_A, DAY_B)
    locks.acquire(spark, settings, first)
    locks.acquire(spark, settings, first)  # holding it already: granted again
    with pytest.raises(locks.RunLocked, match=rf"run {first.run_id} \(pipeline, on {socket.gethostname()} pid {os.getpid()}.*"
                                              rf"holds receipt dates {DAY_A}..{DAY_B}, which overlaps this run's receipt dates {DAY_B}..{DAY_B}"):
        locks.acquire(spark, settings, _claim(DAY_B, DAY_B))
    later = _claim(DAY_B + timedelta(days=1), DAY_B + timedelta(days=5))
    locks.acquire(spark, settings, later)
    with pytest.raises(locks.RunLocked, match="holds the gold stage"):
        gold = _claim(*locks.EVERY_DATE, claim=locks.GOLD)
        locks.acquire(spark, settings, gold)
        locks.acquire(spark, settings, _claim(*locks.EVERY_DATE, claim=locks.GOLD))
    locks.release(spark, str(tmp_path), first.run_id)
    locks.acquire(spark, settings, _claim(DAY_B, DAY_B))  # released: granted


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Tokyo"])
def test_claims_are_timed_in_utc_whatever_the_sessions_time_zone(spark, tmp_path, zone):
    """Issue #23 (9): a live claim (heartbeat a minute old) stays live and a stale one (31 minutes) lapses in a
    session whose time zone is not UTC; the heartbeat a refresh writes is now, as an instant."""
    settings = _settings(tmp_path, lock_stale_minutes=30)
    now = datetime.now(timezone.utc)
    live, stale = _claim(DAY_A, DAY_A), _claim(DAY_B, DAY_B)
    _plant(spark, tmp_path, live, "another-host", 1, now - timedelta(minutes=1))
    _plant(spark, tmp_path, stale, "another-host", 1, now - timedelta(minutes=31))
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", zone)
    try:
        with pytest.raises(locks.RunLocked, match=live.run_id):
            locks.acquire(spark, settings, _claim(DAY_A, DAY_A))
        mine = _claim(DAY_B, DAY_B)
        locks.acquire(spark, settings, mine)  # the stale claim lapsed
        locks.refresh(spark, str(tmp_path), mine.run_id)
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
    beat = lakehouse.read_table(spark, locks.RUN_LOCKS, str(tmp_path)).where(f"run_id = '{mine.run_id}'").first().heartbeat_at
    assert abs(beat.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)) < timedelta(minutes=5)  # read back in UTC


def test_a_crashed_runs_claim_lapses(spark, tmp_path):
    settings = _settings(tmp_path, lock_stale_minutes=30)
    now = datetime.now(timezone.utc)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_here = _claim(DAY_A, DAY_A)
    _plant(spark, tmp_path, dead_here, socket.gethostname(), int(gone.stdout), now)  # its process is gone from this host
    stale_elsewhere = _claim(DAY_B, DAY_B)
    _plant(spark, tmp_path, stale_elsewhere, "another-host", 1, now - timedelta(minutes=31))  # not refreshed for 31 minutes
    live_elsewhere = _claim(DAY_B + timedelta(days=1), DAY_B + timedelta(days=1))
    _plant(spark, tmp_path, live_elsewhere, "another-host", 1, now - timedelta(minutes=5))

    locks.acquire(spark, settings, _claim(DAY_A, DAY_B))
    claims = {r.run_id for r in lakehouse.read_table(spark, locks.RUN_LOCKS, str(tmp_path)).collect()}
    assert dead_here.run_id not in claims  # taken over
    with pytest.raises(locks.RunLocked, match=f"run {live_elsewhere.run_id} .* lapses at"):
        locks.acquire(spark, settings, _claim(DAY_B, DAY_B + timedelta(days=1)))


@pytest.mark.skipif(not Path("/proc/self/ns/pid").exists(), reason="process identities need Linux's /proc")
def test_a_claim_from_another_container_with_this_host_name_is_not_taken_for_a_crashed_one(spark, tmp_path):
    """Issue #23 (9): containers can share a host name and their process numbers; a live run in another pid
    namespace, whose pid does not exist here, keeps its claim (until it is stale), while a run of this
    namespace whose process is gone, or whose pid another process now has, loses it."""
    settings = _settings(tmp_path, lock_stale_minutes=30)
    now, host = datetime.now(timezone.utc), socket.gethostname()
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True).stdout)
    here = f"{Path('/proc/sys/kernel/random/boot_id').read_text().strip()}/{os.readlink('/proc/self/ns/pid')}"  # this boot, pid namespace
    elsewhere, dead, reused = _claim(DAY_A, DAY_A), _claim(DAY_B, DAY_B), _claim(DAY_B + timedelta(days=1), DAY_B + timedelta(days=1))
    _plant(spark, tmp_path, elsewhere, host, gone, now, process=f"{here.split('/')[0]}/pid:[1]/12345")
    _plant(spark, tmp_path, dead, host, gone, now, process=f"{here}/12345")
    _plant(spark, tmp_path, reused, host, os.getpid(), now, process=f"{here}/1")  # this pid, another start time
    with pytest.raises(locks.RunLocked, match=elsewhere.run_id):
        locks.acquire(spark, settings, _claim(DAY_A, DAY_A))
    mine = _claim(DAY_B, DAY_B + timedelta(days=1))
    locks.acquire(spark, settings, mine)
    claims = {r.run_id for r in lakehouse.read_table(spark, locks.RUN_LOCKS, str(tmp_path)).collect()}
    assert claims == {elsewhere.run_id, mine.run_id}


def test_a_stage_longer_than_the_beat_keeps_the_runs_claim_live(spark, tmp_path, monkeypatch):
    """Issue #23 (9): a run's claims are refreshed while a stage runs, not only when one starts: a stage that
    waits for its own claim's heartbeat to move past the claim's start (a sixth of a 1-minute stale window:
    10 s) ends, and the run with it, instead of outlasting a window in which nothing refreshes it."""
    settings = _settings(tmp_path, lock_stale_minutes=1)
    run_id = uuid.uuid4().hex

    def run(spark, settings, scope):
        claims = lakehouse.read_table(spark, locks.RUN_LOCKS, str(tmp_path)).where(f"run_id = '{run_id}' AND claim = 'dates'")
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:  # polls the table until the heartbeat moved (at most 45 s)
            claim = claims.first()
            if claim.heartbeat_at > claim.acquired_at:
                return {"heartbeats_seen": 1}
            time.sleep(0.5)
        raise AssertionError("the claim's heartbeat did not move while the stage ran")

    stage = type(sys)("ttb_spark.long_stage")
    stage.run = run
    monkeypatch.setitem(sys.modules, "ttb_spark.long_stage", stage)
    monkeypatch.setitem(runner.JOBS, "long", ("long_stage",))
    monkeypatch.setitem(runner.STAGES, "long_stage", "ttb_spark.long_stage")
    result = runner.run_job("long", spark, settings, Scope(DAY_A, DAY_A, ("001",), ("cola-detail",), run_id=run_id))
    assert (result.exit_code, result.record.error) == (0, None)
    counts = result.record.counts["long_stage"]
    assert counts["heartbeats_seen"] == 1
    # what the stage cost, in its counts (the audit row's and the summary's): wall time, and the SQL executions
    # of its own polls and of the heartbeat's UPDATEs (one at least, before it saw the claim move)
    assert counts["ms"] >= 1000 and counts["sql_executions"] >= 3
    assert lakehouse.read_table(spark, locks.RUN_LOCKS, str(tmp_path)).where(f"run_id = '{run_id}'").isEmpty()  # released


@pytest.fixture(scope="module")
def registry():
    with simulator.running(scale=0.02) as sim:
        yield sim


def _argv(root: Path, url: str, job: str, day: date) -> list[str]:
    return [job, "--env", "test", "--date", day.isoformat(), "--receipt-methods", METHODS, "--registry-url", url,
            "--raw-root", str(root / "raw"), "--lakehouse-root", str(root / "lakehouse")]


def _job(root: Path, url: str, job: str, day: date, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TTB_USE_SIMULATOR": "false"}
    return subprocess.Popen([sys.executable, "-m", "ttb_spark", *_argv(root, url, job, day)], cwd=root, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def test_two_processes_over_disjoint_dates_both_succeed_and_a_third_on_held_dates_exits_naming_it(spark, registry, tmp_path):
    started = time.monotonic()
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    # walks: a walk claims its dates only (a backfill by search claims every date)
    procs = [_job(tmp_path, registry.base_url, "walk", day, log) for day, log in zip((DAY_A, DAY_B), logs)]
    codes = [p.wait(timeout=2400) for p in procs]
    print(f"two concurrent pipeline runs: {time.monotonic() - started:.0f}s")
    assert codes == [0, 0], "\n".join(log.read_text(errors="replace")[-3000:] for log in logs)

    lake = str(tmp_path / "lakehouse")
    runs = lakehouse.read_table(spark, audit.PIPELINE_RUNS, lake).collect()
    assert sorted((r.job, r.status) for r in runs) == [("walk", "succeeded")] * 2
    assert lakehouse.read_table(spark, locks.RUN_LOCKS, lake).isEmpty()  # released
    public = registry.public_ids([DAY_A, DAY_B], METHODS.split(","))
    for name in ("silver.cola_details", "gold.ttb_consolidated"):
        ids = lakehouse.read_table(spark, tables.BY_NAME[name], lake).select("ttb_id")
        assert ids.count() == ids.distinct().count(), f"{name}: a row written twice"
        assert {r.ttb_id for r in ids.collect()} == public, f"{name}: rows lost or invented"

    holder = _claim(DAY_A, DAY_A)
    locks.acquire(spark, _settings(tmp_path / "lakehouse"), holder)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TTB_USE_SIMULATOR", "false")
            code, out, err = _capture(lambda: cli.main(_argv(tmp_path, registry.base_url, "silver", DAY_A)))
    finally:
        locks.release(spark, lake, holder.run_id)
    text = out + err
    assert code == 1, text[-3000:]
    assert f"silver: stopped: run {holder.run_id} (pipeline" in text and f"holds receipt dates {DAY_A}..{DAY_A}" in text, text[-3000:]
    failed = lakehouse.read_table(spark, audit.PIPELINE_RUNS, lake).where(F.col("job") == "silver").first()
    assert failed.status == "failed" and failed.error.startswith("RunLocked: run " + holder.run_id)


def test_s3_multi_writer_setting_reaches_the_session():
    from ttb_spark.settings import SettingsError
    from ttb_spark.spark import DYNAMODB_LOG_STORE, local_conf, packages

    shared = load_settings("production", {"concurrency": {"delta_dynamodb_table": "ttb_delta_log"}, "pipeline": {"aws_region": "eu-west-1"}})
    conf = local_conf(shared)
    assert conf["spark.delta.logStore.s3.impl"] == conf["spark.delta.logStore.s3a.impl"] == DYNAMODB_LOG_STORE
    assert conf[f"spark.{DYNAMODB_LOG_STORE}.ddb.tableName"] == "ttb_delta_log"
    assert conf[f"spark.{DYNAMODB_LOG_STORE}.ddb.region"] == "eu-west-1"
    delta_version = packages(shared)[0].rsplit(":", 1)[1]
    assert f"io.delta:delta-storage-s3-dynamodb:{delta_version}" in packages(shared)
    for alone in (load_settings("production"), load_settings("test", {"concurrency": {"delta_dynamodb_table": "ttb_delta_log"}})):
        assert not any("logStore" in k for k in local_conf(alone)) and len(packages(alone)) <= 2  # one writer / a local folder
    with pytest.raises(SettingsError, match="invalid setting TTB_DELTA_DYNAMODB_TABLE: must be a DynamoDB table name"):
        load_settings("production", {"concurrency": {"delta_dynamodb_table": "no spaces"}})
