"""The daily flow over 60 simulated days, run as the shipped schedule runs it.

The simulator's clock runs through 60 days (seed 4 from 2024-03-04, its smallest scale: a few
records a day): approvals more than 120 days after receipt, status changes, one record withdrawn
after the lakehouse saw it, faults on every kind of request. ``daily --env test --since-last-run``
runs through the command line on 8 of those days, irregularly (three days in a row, gaps of a
week, of two weeks and of almost four); the simulated today reaches the run the way a scheduled run learns its
day, through ``TTB_PARTITION_END_DATE`` in the environment. At the end gold equals the registry's
public truth as of day 60, ``fact_status_changes`` holds exactly the changes the runs could
observe, and the same command once more changes no table's data.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ttb_spark import audit, cli, lakehouse, search, simulator
from ttb_spark.gold.consolidated import CONSOLIDATED
from ttb_spark.gold.facts import FACT_STATUS_CHANGES

START = date(2024, 3, 4)
SEED = 4  # one record approved on day 20 is withdrawn on day 50, between runs that see it and runs that must drop it
DAYS = 60
RUN_DAYS = (0, 1, 2, 9, 16, 17, 33, 59)  # offsets from START of the days the schedule ran
FAULTS = {"reset": 0.02, "server_error": 0.03, "rate_limit": 0.02, "truncate": 0.02, "session_timeout": 0.01, "retry_after": 0}
LAST = START + timedelta(days=DAYS - 1)
BOOKKEEPING = {"ops.pipeline_runs", "ops.ingested_manifests"}  # every run records itself and the manifests it read


def daily(monkeypatch, capsys, sim, day: date) -> str:
    """``daily --env test --since-last-run`` with the simulated day as the schedule's today."""
    sim.today = day
    monkeypatch.setenv("TTB_PARTITION_END_DATE", day.isoformat())
    code = cli.main(["daily", "--env", "test", "--since-last-run"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err[-3000:]
    return out.out


def data_changes(spark, root: str, since: dict[str, int | None]) -> dict[str, list]:
    """Per table (bookkeeping aside), the commits after ``since`` that changed data."""
    changed = {name: lakehouse.data_commits(spark, spec, root, since.get(name)) for name, spec in lakehouse.REGISTRY.items()
               if name not in BOOKKEEPING}
    return {name: commits for name, commits in changed.items() if commits}


def test_sixty_days_of_daily_runs_end_with_the_registry_truth(spark, tmp_path, monkeypatch, capsys):
    raw, root = tmp_path / "raw", str(tmp_path / "lakehouse")
    run_days = [START + timedelta(days=d) for d in RUN_DAYS]
    with simulator.running(seed=SEED, scale=0.01, faults=FAULTS, today=START) as sim:
        for name, value in {"TTB_USE_SIMULATOR": "false", "TTB_REGISTRY_BASE_URL": sim.base_url, "TTB_RAW_ROOT": str(raw),
                            "TTB_LAKEHOUSE_ROOT": root, "TTB_PARTITION_START_DATE": START.isoformat()}.items():
            monkeypatch.setenv(name, value)
        summaries = [daily(monkeypatch, capsys, sim, day) for day in run_days]
        faults = {h.answer for h in sim.hits} & {"reset", "server_error", "rate_limit", "truncate", "session_timeout"}
        truth = {r.ttb_id: sim.registry.state(r.ttb_id, LAST).status for r in sim.search(search.Criteria(START, LAST))}
        versions = {n: lakehouse.current_version(spark, s, root) for n, s in lakehouse.REGISTRY.items()}
        again = daily(monkeypatch, capsys, sim, LAST)
        registry = sim.registry
    assert faults == {"reset", "server_error", "rate_limit", "truncate", "session_timeout"}

    gold = {r.ttb_id: r.status for r in lakehouse.read_table(spark, CONSOLIDATED, root).select("ttb_id", "status").collect()}
    late = [i for i in truth if (registry.record(i).approval_date - registry.record(i).receipt_date).days > 120]
    assert late and len(truth) > 300
    assert gold == truth  # every public COLA completed in the window, with its current status; nothing withdrawn

    every = {r.ttb_id for r in lakehouse.read_table(spark, FACT_STATUS_CHANGES, root).select("ttb_id").collect()}
    history = {(r.ttb_id, r.change_type, r.previous_status, r.status)
               for r in lakehouse.read_table(spark, FACT_STATUS_CHANGES, root).collect()}
    expected = registry.observable_history(every | set(truth), START, run_days)
    assert history == expected
    withdrawn = sorted(i for i, kind, _, _ in expected if kind == "withdrawn")
    assert len(withdrawn) == 1 and withdrawn[0] not in gold
    changes = {(i, s) for i, kind, _, s in history if kind == "change"}
    made = {(r.ttb_id, registry.record(r.ttb_id).change_status) for r in map(registry.record, truth)
            if r.change_date and START <= r.change_date <= LAST}
    assert made and made <= {(i, s) for i, _, _, s in history}  # every status the simulator changed to in the window
    assert changes

    runs = lakehouse.read_table(spark, audit.PIPELINE_RUNS, root).orderBy("started_at").collect()
    assert [r.status for r in runs] == ["succeeded"] * (len(run_days) + 1)
    assert sum(r.counts["changes"].get("withdrawn", 0) for r in runs) == 1
    withdrawal_run = next(r for r in runs if r.counts["changes"].get("withdrawn"))
    assert withdrawal_run.changes["withdrawn"] == withdrawn
    assert sum(r.counts["changes"].get("new", 0) for r in runs) == len({i for i, kind, _, _ in history if kind == "initial"})
    assert any(f"  withdrawn 1: {withdrawn[0]}" in s for s in summaries) and "  new " in summaries[0]

    assert data_changes(spark, root, versions) == {}, again
    assert runs[-1].counts["discover"]["fetched_ids"] == 0
