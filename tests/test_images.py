"""Label images (issue #26), against the simulator over HTTP: each certificate discovery fetches is followed by its
label images in the same session; images not due yet are deferred without a request and revisited when due; a
missing one is revisited, then given up after the window; a stored one is never fetched again; faults never leave
a partial image or an HTML page stored. The images job fills COLAs stored without images within its budget; the
images are decoded in silver and follow their certificates into gold."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from pyspark.sql.types import StringType, StructField, StructType

from conftest import make_settings
from ttb_spark.raw import discover, images, storage
from ttb_spark.raw.fetch import Fetcher
from ttb_spark.registry import simulator
from ttb_spark.registry.simulator import images as drawn
from ttb_spark.registry.ttb_id import TTBId

TODAY = date(2024, 3, 1)


def at(day: date) -> datetime:
    return datetime.combine(day, time(12), timezone.utc)


def settings_for(tmp_path, sim, **extraction: Any):
    return make_settings(tmp_path, extraction={"registry_base_url": sim.base_url, "use_simulator": False, "label_images": True,
                                               **extraction})


def image_lines(store: storage.RawStore, run_id: str) -> list[dict[str, Any]]:
    """Every line of the run's complete image manifests."""
    keys = [k for k in storage.complete_manifests(store, storage.IMAGE_MANIFESTS) if f"/run_id={run_id}/" in k]
    return [line for key in keys for line in storage.manifest_entries(store, key)]


def certificate_labels(store: storage.RawStore, run_id: str) -> dict[tuple[str, int, str], images.Label]:
    """The labels of the certificates the run's discovery manifests record found, read from the pages stored."""
    keys = [k for k in storage.complete_manifests(store, storage.DISCOVERY_MANIFESTS) if f"/run_id={run_id}/" in k]
    found = [e for k in keys for e in storage.manifest_entries(store, k) if e["data_type"] == "certificate" and e["outcome"] == "found"]
    labels = {}
    for entry in found:
        for label in images.labels_of(store.get(entry["key"]), TTBId(entry["ttb_id"])):
            labels[entry["ttb_id"], label.position, label.file_name] = label
    return labels


def served(sim, store: storage.RawStore, ttb_id: str, position: int) -> bytes:
    """The image the simulator serves for the label at ``position`` of the certificate stored for ``ttb_id``."""
    key = next(e["key"] for e in _pages(store) if e["ttb_id"] == ttb_id and e["data_type"] == "certificate" and e["key"])
    return drawn.image_of(sim.registry.record(ttb_id), drawn.labels(store.get(key))[position - 1])


def _pages(store: storage.RawStore) -> list[dict[str, Any]]:
    return [e for k in storage.complete_manifests(store, storage.DISCOVERY_MANIFESTS) for e in storage.manifest_entries(store, k)]


def image_hits(sim, since: int) -> Counter:
    return Counter(h.answer for h in sim.hits[since:] if h.data_type == "label-image")


def test_images_follow_their_certificate_the_new_ones_wait_until_due_and_none_is_fetched_twice(tmp_path):
    with simulator.running(seed=0, scale=0.05, today=TODAY) as sim:
        settings = settings_for(tmp_path, sim)
        store = storage.raw_store(settings)
        first = discover.discover(settings, "r1", TODAY - timedelta(days=6), TODAY, history_start=TODAY - timedelta(days=6), now=at(TODAY))
        lines1 = image_lines(store, "r1")
        labels = certificate_labels(store, "r1")
        # one line per label of every certificate found; those approved within 48 hours wait, without a request
        assert sorted((e["ttb_id"], e["position"], e["file_name"]) for e in lines1) == sorted(labels)
        due = {k for k, label in labels.items() if label.due <= TODAY}
        assert due and len(due) < len(labels)
        assert {(e["ttb_id"], e["position"], e["file_name"]) for e in lines1 if e["outcome"] == "found"} == due
        assert {e["outcome"] for e in lines1} == {"found", "deferred"}
        assert image_hits(sim, 0) == {"image": len(due)}  # each in its certificate's session: no certificate shown again
        assert first["images_found"] == len(due) and first["images_deferred"] == len(labels) - len(due)
        assert first["image_requests"] == len(due)
        for e in lines1:
            if e["outcome"] == "found":
                body = store.get(e["key"])
                assert body == served(sim, store, e["ttb_id"], e["position"]) and e["sha256"] == hashlib.sha256(body).hexdigest()
                assert e["key"] == storage.image_key(TTBId(e["ttb_id"]), e["position"], e["file_name"])

        sim.today = TODAY + timedelta(days=2)
        before = len(sim.hits)
        second = discover.discover(settings, "r2", TODAY + timedelta(days=1), sim.today, history_start=TODAY - timedelta(days=6),
                                   sweep=False, now=at(sim.today))
        revisited = [e for e in image_lines(store, "r2") if e["ttb_id"] in {k[0] for k in labels}]
        assert sorted((e["ttb_id"], e["position"], e["file_name"]) for e in revisited) == sorted(set(labels) - due)
        assert {e["outcome"] for e in revisited} == {"found"} and second["images_revisited"] == len(revisited)
        owed_ids = {e["ttb_id"] for e in revisited}
        shown = [h for h in sim.hits[before:] if h.data_type == "certificate" and h.ttb_id in owed_ids]
        assert len(shown) == len(owed_ids)  # the certificate shown again once per COLA revisited, then its images
        assert second["image_requests"] == len(shown) + len(revisited)
        for e in revisited:
            assert store.get(e["key"]) == served(sim, store, e["ttb_id"], e["position"])
        # what the images cost over both runs: an image each, and a certificate per COLA revisited
        image_requests = sum(image_hits(sim, 0).values()) + len(shown)
        assert image_requests / len(labels) <= 1.6

        before = len(sim.hits)
        third = discover.discover(settings, "r3", sim.today, sim.today, history_start=TODAY - timedelta(days=6), sweep=False,
                                  now=at(sim.today))
        assert third["images_revisited"] == 0 and image_hits(sim, before) == {}
    stored = [k for k in store.list("images/")]
    found = [e["key"] for run in ("r1", "r2", "r3") for e in image_lines(store, run) if e["outcome"] == "found"]
    assert sorted(found) == sorted(stored) and len(set(found)) == len(found)  # every image stored once, by one line


def test_a_missing_image_is_revisited_until_it_comes_and_given_up_after_the_window(tmp_path):
    """The run's clock says the images are due, the registry does not have them yet: ``missing``, after one request
    each; revisited by later runs (still missing, then found once served), or given up once pending longer than
    ``TTB_IMAGE_REVISIT_DAYS``. A certificate fetched again records its stored images ``held``, without a request."""
    late = TODAY + timedelta(days=3)
    with simulator.running(seed=0, scale=0.05, today=TODAY) as sim:
        settings = settings_for(tmp_path, sim, image_revisit_days=3)
        store = storage.raw_store(settings)
        discover.discover(settings, "r1", TODAY - timedelta(days=1), TODAY, history_start=TODAY - timedelta(days=1), now=at(late))
        missing = {(e["ttb_id"], e["position"]) for e in image_lines(store, "r1") if e["outcome"] == "missing"}
        fresh = {(e["ttb_id"], e["position"]) for e in image_lines(store, "r1") if e["issued_date"] >= (TODAY - timedelta(days=1)).isoformat()}
        assert missing and missing == fresh  # served from two days after approval
        assert image_hits(sim, 0)["no_image"] == len(missing)

        # a day later, for the run: still not served (the registry's clock stands still), pending since the first miss
        again = discover.discover(settings, "r2", late, late + timedelta(days=1), history_start=TODAY - timedelta(days=1), sweep=False,
                                  now=at(late + timedelta(days=1)))
        lines2 = [e for e in image_lines(store, "r2") if (e["ttb_id"], e["position"]) in missing]
        assert again["images_revisited"] == len(missing) and {e["outcome"] for e in lines2} == {"missing"}
        assert {e["pending_since"] for e in lines2} == {late.isoformat()}

        # past the window: given up, no request
        before = len(sim.hits)
        gone = late + timedelta(days=4)
        given = discover.discover(settings, "r3", gone, gone, history_start=TODAY - timedelta(days=1), sweep=False, now=at(gone))
        assert given["images_given_up"] == len(missing) and given["images_revisited"] == 0 and image_hits(sim, before) == {}

        # within it, once served: found
        sim.today = late
        found = discover.discover(settings, "r4", late + timedelta(days=2), late + timedelta(days=2), history_start=TODAY - timedelta(days=1),
                                  sweep=False, now=at(late + timedelta(days=2)))
        lines4 = image_lines(store, "r4")
        assert found["images_found"] == len(missing) and {(e["ttb_id"], e["position"]) for e in lines4} == missing

        # a certificate fetched again: its images are held, not fetched
        ttb_id = TTBId(sorted(missing)[0][0])
        before = len(sim.hits)
        fetcher = Fetcher(settings, store, "r5", late)
        try:
            fetcher.fetch([ttb_id], {})
        finally:
            fetcher.close()
        held = fetcher.take_images()
        assert held and {e["outcome"] for e in held} == {"held"} and image_hits(sim, before) == {}
        assert all(store.get(e["key"]) == served(sim, store, e["ttb_id"], e["position"]) for e in held)


def test_faults_on_images_are_retried_and_never_store_a_partial_image_or_a_page(tmp_path):
    faults = {"server_error": 0.1, "reset": 0.1, "truncate": 0.1, "session_timeout": 0.1, "retry_after": 0, "data_types": ("label-image",)}
    with simulator.running(seed=1, scale=0.02, today=TODAY, faults=faults) as sim:
        settings = settings_for(tmp_path, sim, max_retries=10)  # 0.4 ** 11: no image runs out of attempts
        store = storage.raw_store(settings)
        counts = discover.discover(settings, "r1", TODAY - timedelta(days=9), TODAY - timedelta(days=2),
                                   history_start=TODAY - timedelta(days=9), now=at(TODAY))
        lines = image_lines(store, "r1")
        struck = image_hits(sim, 0)
    assert {"server_error", "reset", "truncate", "session_timeout"} <= set(struck)
    assert lines and {e["outcome"] for e in lines} == {"found"} and counts["images_found"] == len(lines)
    for e in lines:
        assert store.get(e["key"]) == served(sim, store, e["ttb_id"], e["position"])


def test_images_off_fetches_none(tmp_path):
    with simulator.running(seed=0, scale=0.02, today=TODAY) as sim:
        settings = settings_for(tmp_path, sim, label_images=False)
        store = storage.raw_store(settings)
        counts = discover.discover(settings, "r1", TODAY - timedelta(days=6), TODAY - timedelta(days=2),
                                   history_start=TODAY - timedelta(days=6), now=at(TODAY))
        assert counts["pages_found"] > 0 and image_hits(sim, 0) == {}
    assert not any(k.startswith("images") for k in counts) and store.list("images/") == [] and store.list(storage.IMAGE_MANIFESTS) == []


def test_a_run_killed_after_storing_images_loses_none_fetches_none_twice_and_bronze_holds_each_once(spark, tmp_path, monkeypatch):
    """The kill between a part's stored images and its manifests (images, then pages): the rerun fetches the part's
    certificates again (no manifest names them), finds their images stored and records them ``held``, without an
    image request; every label ends with exactly one stored image, as served. Bronze then makes one row of each
    stored image (bytes and SHA-256 those of the object at ``path``), reads each manifest once, and run again
    writes nothing."""
    monkeypatch.setattr(discover, "PART_IDS", 5)
    first_day, last_day = TODAY - timedelta(days=4), TODAY - timedelta(days=2)  # every image due
    with simulator.running(seed=0, scale=0.05, today=TODAY) as sim:
        settings = settings_for(tmp_path, sim)
        store = storage.raw_store(settings)
        discover.discover(settings, "killed", first_day, last_day, history_start=first_day, spark=spark, now=at(TODAY))
        pages = sorted(k for k in storage.complete_manifests(store, storage.DISCOVERY_MANIFESTS))
        shots = sorted(k for k in storage.complete_manifests(store, storage.IMAGE_MANIFESTS))
        assert len(pages) >= 3 and len(shots) == len(pages)  # an image manifest per part (no revisit: none owed)
        interrupted = {e["ttb_id"] for e in storage.manifest_entries(store, pages[-1])}
        lost = [e for e in storage.manifest_entries(store, shots[-1])]
        assert lost and {e["outcome"] for e in lost} == {"found"} and {e["ttb_id"] for e in lost} <= interrupted
        for key in (pages[-1], shots[-1]):  # the kill: the last part's pages and images stored, neither manifest
            store.delete(storage.marker_of(key))
            store.delete(key)
        before = len(sim.hits)
        again = discover.discover(settings, "rerun", first_day, last_day, history_start=first_day, spark=spark, now=at(TODAY))
        hits = sim.hits[before:]
    assert {h.ttb_id for h in hits if h.data_type == "certificate"} == interrupted
    assert not [h for h in hits if h.data_type == "label-image"]
    held = image_lines(store, "rerun")
    assert sorted((e["ttb_id"], e["position"], e["key"], e["sha256"]) for e in held) == sorted(
        (e["ttb_id"], e["position"], e["key"], e["sha256"]) for e in lost)
    assert {e["outcome"] for e in held} == {"held"} and again["images_held"] == len(lost)
    recorded = [e["key"] for k in storage.complete_manifests(store, storage.IMAGE_MANIFESTS) for e in storage.manifest_entries(store, k)]
    assert sorted(set(recorded)) == store.list("images/")  # every stored image named by a complete manifest
    assert all(store.get(e["key"]) == served(sim, store, e["ttb_id"], e["position"]) for e in held)

    from ttb_spark import bronze, lakehouse
    from ttb_spark.scope import ReceiptDates

    root = settings.pipeline.lakehouse_root
    scope = ReceiptDates(first_day, last_day, ("001",), ("cola-detail", "certificate"), run_id="b1")
    counts = bronze.run(spark, settings, scope)
    stored = {e["key"]: e for run in ("killed", "rerun") for e in image_lines(store, run)}
    assert counts["images_inserted"] == len(stored) == len(store.list("images/")) 
    assert counts["image_manifests"] == len(storage.complete_manifests(store, storage.IMAGE_MANIFESTS))
    rows = lakehouse.read_table(spark, bronze.LABEL_IMAGES, root).collect()
    assert sorted((r.image_key, r.ttb_id, r.position, r.file_name, r.sha256) for r in rows) == sorted(
        (k, e["ttb_id"], e["position"], e["file_name"], e["sha256"]) for k, e in stored.items())
    assert {r.fetch_run_id for r in rows if r.image_key in {e["key"] for e in held}} == {"rerun"}  # the first line naming it
    for r in rows:
        body = open(r.path, "rb").read()
        assert (len(body), hashlib.sha256(body).hexdigest(), r.content_type) == (r.bytes, r.sha256, images.content_type(body))
    version = lakehouse.current_version(spark, bronze.LABEL_IMAGES, root)
    again = bronze.run(spark, settings, replace(scope, run_id="b2"))
    assert "images_inserted" not in again and lakehouse.current_version(spark, bronze.LABEL_IMAGES, root) == version
    # a later run that fetched those certificates again recorded their images held: read, and nothing written
    images.write_part(store, "later", TODAY, 0, [e | {"run_id": "later"} for e in held])
    later = bronze.run(spark, settings, replace(scope, run_id="b3"))
    assert (later["image_manifests"], later["images_inserted"]) == (1, 0)
    assert lakehouse.current_version(spark, bronze.LABEL_IMAGES, root) == version

def _line(ttb_id: str, position: int, outcome: str, fetched_at: str, manifest: str, body: bytes | None = b"\xff\xd8\xffjpeg") -> dict[str, Any]:
    key = storage.image_key(TTBId(ttb_id), position, f"label {position}.jpg") if body else None
    return {"ttb_id": ttb_id, "receipt_date": TTBId(ttb_id).receipt_date.isoformat(), "position": position,
            "file_name": f"label {position}.jpg", "issued_date": "2024-02-20", "outcome": outcome, "reason": None,
            "http_status": 200 if body else None, "content_type": "image/jpeg" if body else None,
            "bytes": len(body) if body else None, "sha256": hashlib.sha256(body).hexdigest() if body else None, "key": key,
            "attempts": 1, "fetched_at": fetched_at, "pending_since": None if body else "2024-02-22", "run_id": manifest.split("/")[0],
            "manifest_key": manifest}


def test_label_image_rows_keep_the_stored_images_first_fetch(spark):
    """Found and held lines become one row per label (the first fetch: a rerun's ``held`` line names what a killed
    run stored); a label tried but not stored (missing, deferred) has no row; ``path`` is the raw root and the key."""
    from chispa import assert_df_equality
    from pyspark.sql import functions as F

    from ttb_spark import bronze

    wine = "24050001000101"
    lines = [
        _line(wine, 1, "found", "2024-02-23T10:00:00+00:00", "r1/m"),
        _line(wine, 1, "held", "2024-02-23T10:00:00+00:00", "r2/m"),  # the stored copy's time
        _line(wine, 2, "missing", "2024-02-23T10:00:01+00:00", "r1/m", body=None),
        _line(wine, 3, "held", "2024-02-24T09:00:00+00:00", "r2/m"),
    ]
    parsed = spark.createDataFrame([tuple(line[f] for f in bronze.IMAGE_LINE.fieldNames()) + (line["manifest_key"],) for line in lines],
                                   StructType([*bronze.IMAGE_LINE.fields, StructField("manifest_key", StringType())]))
    rows = bronze.label_image_rows(parsed, "s3://bucket/raw/", "ingest-1")
    key = {p: storage.image_key(TTBId(wine), p, f"label {p}.jpg") for p in (1, 3)}
    expected = spark.createDataFrame(
        [(wine, date(2024, 2, 19), p, f"label {p}.jpg", date(2024, 2, 20), key[p], f"s3://bucket/raw/{key[p]}", "image/jpeg", 7,
          hashlib.sha256(b"\xff\xd8\xffjpeg").hexdigest(), at_, run, f"{run}/m", "ingest-1")
         for p, at_, run in ((1, datetime(2024, 2, 23, 10), "r1"), (3, datetime(2024, 2, 24, 9), "r2"))],
        rows.drop("row_hash").schema,
    )
    assert_df_equality(rows.drop("row_hash"), expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    assert rows.select(F.countDistinct("row_hash")).first()[0] == 2


def _keyed(rows: list[Any]) -> dict[tuple[str, int, str], Any]:
    return {(r.ttb_id, r.position, r.file_name): r for r in rows}


@pytest.fixture(scope="module")
def filled(spark, tmp_path_factory) -> SimpleNamespace:
    """COLAs discovered with images off (three completed days), in bronze and silver; then the images job over their
    receipt dates: a run whose budget fits the first two COLAs, the job as a user runs it (the command line: images,
    then bronze) before bronze ingested the first run's manifest, and a third run. What each sent and counted."""
    from ttb_spark import bronze, cli, lakehouse, silver
    from ttb_spark.raw import image_fill
    from ttb_spark.scope import ChangesSince, ReceiptDates
    from ttb_spark.settings import RECEIPT_METHODS

    tmp_path = tmp_path_factory.mktemp("filled")
    first_day, last_day = TODAY - timedelta(days=4), TODAY - timedelta(days=2)
    with simulator.running(seed=2, scale=0.02, today=TODAY) as sim, pytest.MonkeyPatch.context() as env:
        off = settings_for(tmp_path, sim, label_images=False)
        store = storage.raw_store(off)
        discover.discover(off, "d1", first_day, last_day, history_start=first_day, spark=spark, now=at(TODAY))
        bronze.run(spark, off, ReceiptDates(last_day, last_day, tuple(RECEIPT_METHODS), ("cola-detail", "certificate"), run_id="b0"))
        silver.run(spark, off, ChangesSince(TODAY, "s0"))
        root = off.pipeline.lakehouse_root
        labels: dict[str, list[tuple[int, str]]] = {}
        for r in lakehouse.read_table(spark, silver.COLA_CERTIFICATES, root).collect():
            labels[r.ttb_id] = [(n, label.filename) for n, label in enumerate(r.labels or [], 1) if label.filename]
        ids = sorted(i for i, named in labels.items() if named)
        assert len(ids) >= 4 and not store.list("images/")
        history = (min(TTBId(i).receipt_date for i in ids), max(TTBId(i).receipt_date for i in ids))  # the COLAs' receipt dates
        cost = {i: 1 + len(labels[i]) for i in ids}
        on = settings_for(tmp_path, sim, image_request_budget=cost[ids[0]] + cost[ids[1]] + cost[ids[2]] - 1)

        def fill(run_id: str) -> tuple[dict[str, int], list[Any]]:
            before = len(sim.hits)
            return image_fill.run(spark, on, ReceiptDates(*history, tuple(RECEIPT_METHODS), ("certificate",), run_id=run_id)), sim.hits[before:]

        first = fill("i1")
        for name, value in {"TTB_LABEL_IMAGES": "true", "TTB_RAW_ROOT": on.pipeline.raw_root, "TTB_LAKEHOUSE_ROOT": root,
                            "TTB_REGISTRY_BASE_URL": sim.base_url, "TTB_USE_SIMULATOR": "false"}.items():
            env.setenv(name, value)
        before = len(sim.hits)
        assert cli.main(["images", "--env", "test", "--start", history[0].isoformat(), "--end", history[1].isoformat(), "--quiet"]) == 0
        second = sim.hits[before:]
        third = fill("i3")
    return SimpleNamespace(sim=sim, settings=on, store=store, labels=labels, ids=ids, cost=cost, first=first, second=second, third=third)


def test_the_images_job_fills_the_images_of_colas_stored_without_them_within_its_budget(spark, filled):
    """Each owed image fetched once, its certificate shown first, COLAs in TTB ID order within the budget, the rest
    counted over budget; the job run again goes on from there, recording the images the first run stored but bronze
    has not ingested yet held, without a request; bronze then holds every label's image once; a run with nothing
    owed sends nothing."""
    from ttb_spark import bronze, lakehouse

    sim, store, labels, ids, cost = filled.sim, filled.store, filled.labels, filled.ids, filled.cost
    (first, hits), owed_total = filled.first, sum(len(labels[i]) for i in ids)
    taken = [(i, n, name) for i in ids[:2] for n, name in labels[i]]
    assert (first["colas"], first["images_found"], first["image_requests"]) == (2, len(taken), cost[ids[0]] + cost[ids[1]])
    assert first["images_over_budget"] == owed_total - len(taken) and first["colas_over_budget"] == len(ids) - 2
    assert (first["images_owed"], first["images_deferred"], first["images_unavailable"]) == (owed_total, 0, 0)
    assert first["requests"] == first["image_requests"] == len(hits)
    assert Counter(h.ttb_id for h in hits if h.data_type == "certificate") == dict.fromkeys(ids[:2], 1)
    assert Counter(h.answer for h in hits if h.data_type == "label-image") == {"image": len(taken)}
    run_keys = {k.split("run_id=")[1].split("/")[0] for k in storage.complete_manifests(store, storage.IMAGE_MANIFESTS)}
    assert {(e["ttb_id"], e["position"], e["file_name"]) for e in image_lines(store, "i1")} == set(taken)
    assert all(store.get(storage.image_key(TTBId(i), n, name)) == served(sim, store, i, n) for i, n, name in taken)

    # the command line's run: the other COLAs' certificates and images, the first two's stored images held
    second = filled.second
    assert {h.ttb_id for h in second if h.data_type == "certificate"} == set(ids[2:])
    assert Counter(h.answer for h in second if h.data_type == "label-image") == {"image": owed_total - len(taken)}
    assert len(second) == sum(cost[i] for i in ids[2:])
    (cli_run,) = run_keys - {"i1"}
    assert Counter(e["outcome"] for e in image_lines(store, cli_run)) == {"held": len(taken), "found": owed_total - len(taken)}
    rows = lakehouse.read_table(spark, bronze.LABEL_IMAGES, filled.settings.pipeline.lakehouse_root).collect()
    assert sorted((r.ttb_id, r.position, r.file_name) for r in rows) == sorted((i, n, name) for i in ids for n, name in labels[i])
    assert {r.fetch_run_id for r in rows if r.ttb_id in ids[:2]} == {"i1"}  # the first fetch kept: the held line adds none
    assert sorted(store.list("images/")) == sorted(r.image_key for r in rows)

    third, hits = filled.third
    assert third["images_owed"] == 0 and third["image_requests"] == 0 and hits == []


def test_label_images_are_decoded_in_silver_and_follow_their_certificates_into_gold(spark, filled):
    """The images job's lakehouse (:func:`filled`) -> silver -> gold. Silver: one silver.label_images row per bronze row, decoded
    from the raw store's bytes, its pixel aspect the certificate's actual dimensions'; run again, nothing written.
    Gold: one fact_label_images row per decoded image, beside its certificate's label type; an image damaged or
    deleted in the raw store is reprocessed into a rejected silver row with its reason (no row lost, bronze and
    silver still reconcile) and leaves gold; a withdrawn COLA's images leave gold with it; gold run again writes
    nothing. Once the bytes are back, silver decodes them as before."""
    from pyspark.sql import functions as F

    from ttb_spark import bronze, gold, lakehouse, silver
    from ttb_spark.gold.facts import FACT_CERTIFICATES, FACT_LABEL_IMAGES
    from ttb_spark.gold.quality import QUALITY_CHECKS
    from ttb_spark.scope import ChangesSince, ReceiptDates

    settings, store = filled.settings, filled.store
    root = settings.pipeline.lakehouse_root

    def table(spec: lakehouse.TableSpec) -> dict[tuple[str, int, str], Any]:
        return _keyed(lakehouse.read_table(spark, spec, root).collect())

    counts = silver.run(spark, settings, ChangesSince(TODAY, "s1"))
    stored, rows = table(bronze.LABEL_IMAGES), table(silver.LABEL_IMAGES)
    assert len(stored) >= 10 and rows.keys() == stored.keys() and counts["images_decoded"] == len(stored)
    assert {r.decode_status for r in rows.values()} == {"decoded"}
    assert all((r.sha256, r.bytes, f"image/{r.format.lower()}") == (stored[k].sha256, stored[k].bytes, stored[k].content_type)
               for k, r in rows.items())

    # the pixels' proportions are the certificate's "Actual Dimensions" (to the pixel)
    labels = (lakehouse.read_table(spark, silver.COLA_CERTIFICATES, root)
              .select("ttb_id", F.posexplode("labels").alias("index", "label"))
              .select("ttb_id", (F.col("index") + 1).alias("position"), F.col("label.filename").alias("file_name"),
                      "label.width_inches", "label.height_inches", "label.image_type"))
    shown = _keyed(labels.collect())
    assert rows.keys() <= shown.keys()
    for key, r in rows.items():
        inches = shown[key].width_inches / shown[key].height_inches
        assert abs(r.width_px / r.height_px - inches) <= inches * (1 / r.width_px + 1 / r.height_px), (key, r.width_px, r.height_px)

    version = lakehouse.current_version(spark, silver.LABEL_IMAGES, root)
    again = silver.run(spark, settings, ChangesSince(TODAY, "s2"))
    assert "images_decoded" not in again and lakehouse.current_version(spark, silver.LABEL_IMAGES, root) == version

    # gold: each decoded image beside its certificate's label; no more images per COLA than its certificate's labels
    gold.run(spark, settings, ChangesSince(TODAY, "g1"))
    facts = table(FACT_LABEL_IMAGES)
    assert facts.keys() == rows.keys()
    assert all((f.label_type, f.width_px, f.dhash, f.sha256) == (shown[k].image_type, rows[k].width_px, rows[k].dhash, rows[k].sha256)
               for k, f in facts.items())
    # the same artwork filed under other COLAs (the example query), as comparing every pair of hashes finds it
    from ttb_spark.gold import queries

    found = {(r.ttb_id, r.position, r.other_ttb_id, r.other_position): r.distance
             for r in queries.run_examples(spark, root)["same_artwork_under_other_colas"]}
    near = {(a[0], a[1], b[0], b[1]): bin(int(fa.dhash, 16) ^ int(fb.dhash, 16)).count("1")
            for a, fa in facts.items() for b, fb in facts.items() if a[0] < b[0]}
    assert found == {pair: bits for pair, bits in near.items() if bits <= 3}
    per_cola = Counter(k[0] for k in facts)
    certificates = {r.ttb_id: r.label_image_count for r in lakehouse.read_table(spark, FACT_CERTIFICATES, root).collect()}
    assert all(n <= certificates[ttb_id] for ttb_id, n in per_cola.items())
    checks = lakehouse.read_table(spark, QUALITY_CHECKS, root).where("run_id = 'g1'")
    assert [(r.passed, r.blocking) for r in checks.where("check_name = 'images_within_labels:gold.fact_label_images'").collect()] == [(True, True)]

    # the raw store damaged: one image truncated, one deleted; reprocessing their receipt dates keeps both rows, rejected,
    # and leaves every other row as it was; gold drops the two
    first, second = sorted(stored)[:2]
    body = store.get(stored[first].image_key)
    store.put(stored[first].image_key, body[: len(body) // 2])
    kept = store.get(stored[second].image_key)
    store.delete(stored[second].image_key)
    days = sorted({stored[first].receipt_date, stored[second].receipt_date})
    methods = tuple(sorted({TTBId(k[0]).receipt_method for k in (first, second)}))
    scope = ReceiptDates(days[0], days[-1], methods, ("certificate",), run_id="s3")
    damaged = silver.run(spark, settings, scope)
    after = table(silver.LABEL_IMAGES)
    assert after.keys() == stored.keys() and damaged["images_rejected"] == 2 and damaged["image_dates_unbalanced"] == 0
    assert (after[first].decode_status, after[first].reason, after[second].reason) == ("rejected", "bytes_differ", "object_missing")
    assert {k: r for k, r in after.items() if k not in (first, second)} == {k: r for k, r in rows.items() if k not in (first, second)}
    gold.run(spark, settings, ChangesSince(TODAY, "g2"))
    assert table(FACT_LABEL_IMAGES) == {k: f for k, f in facts.items() if k not in (first, second)}

    # a COLA withdrawn from public view (bronze records it as discovery does): its images leave gold with its certificate
    gone = max(per_cola, key=lambda ttb_id: (per_cola[ttb_id], ttb_id))
    spark.sql(f"UPDATE {lakehouse.table_ref(bronze.PAGES, root)} SET withdrawn_at = current_timestamp() WHERE ttb_id = '{gone}'")
    silver.run(spark, settings, ChangesSince(TODAY, "s4"))
    gold.run(spark, settings, ChangesSince(TODAY, "g3"))
    assert table(FACT_LABEL_IMAGES) == {k: f for k, f in facts.items() if k not in (first, second) and k[0] != gone}
    assert gone not in {r.ttb_id for r in lakehouse.read_table(spark, FACT_CERTIFICATES, root).collect()}
    version = lakehouse.current_version(spark, FACT_LABEL_IMAGES, root)
    gold.run(spark, settings, ChangesSince(TODAY, "g4"))
    assert lakehouse.current_version(spark, FACT_LABEL_IMAGES, root) == version

    store.put(stored[first].image_key, body)
    store.put(stored[second].image_key, kept)
    silver.run(spark, settings, replace(scope, run_id="s5"))
    assert table(silver.LABEL_IMAGES) == rows


# ------------------------------------------------------------------- the images job's plan: what it owes, what fits its budget


def _label(position: int) -> images.Label:
    return images.Label(position, f"label {position}.jpg", TODAY - timedelta(days=20))


def test_the_budget_takes_colas_in_id_order_until_one_does_not_fit():
    from ttb_spark.raw import image_fill

    a, b, c, d = (TTBId.build(TODAY - timedelta(days=30), "001", n) for n in (1, 2, 3, 4))
    due = {c: [_label(1), _label(2), _label(3)], a: [_label(1), _label(2)], d: [_label(1)], b: [_label(1)]}
    held = {storage.image_key(b, 1, "label 1.jpg")}  # stored by a run killed before its manifest: no request
    # a: certificate + 2 images = 3; b: held only, 0; c: 4 more would make 7: c and d wait, though d alone would fit
    assert image_fill.within_budget(due, held.__contains__, budget=6) == {a: due[a], b: due[b]}
    assert image_fill.within_budget(due, held.__contains__, budget=7) == {a: due[a], b: due[b], c: due[c]}
    assert image_fill.within_budget(due, held.__contains__, budget=2) == {}


def test_labels_without_image_are_the_certificates_labels_bronze_holds_no_image_of_with_their_status(spark):
    from chispa import assert_df_equality

    from ttb_spark.raw import image_fill

    label = "struct<image_type:string, width_inches:double, height_inches:double, image_url:string, filename:string>"
    certificates = spark.createDataFrame(
        [("24001001000001", date(2024, 1, 1), date(2024, 1, 9), [("Brand (front)", 3.0, 4.0, "u1", "a.jpg"), ("Back", 3.0, 2.0, "u2", "b b.png")]),
         ("24001001000002", date(2024, 1, 1), date(2024, 1, 9), [("Neck", 1.0, 1.0, "u3", None)]),
         ("24001001000003", date(2024, 1, 1), None, None),
         ("24001001000004", date(2024, 1, 1), date(2024, 2, 29), [("Brand", 3.0, 4.0, "u4", "new.jpg")]),
         ("98001001000001", date(1998, 1, 1), date(1998, 2, 1), [("Brand", 3.0, 4.0, "u5", "old.gif")])],
        f"ttb_id string, receipt_date date, issued_date date, labels array<{label}>")
    stored = spark.createDataFrame([("24001001000001", 1, "a.jpg"), ("24001001000001", 2, "other.png")],
                                   "ttb_id string, position int, file_name string")
    expected = spark.createDataFrame(
        [("24001001000001", 2, "b b.png", date(2024, 1, 9), "due"), ("24001001000004", 1, "new.jpg", date(2024, 2, 29), "deferred"),
         ("98001001000001", 1, "old.gif", date(1998, 2, 1), "unavailable")],
        "ttb_id string, position int, file_name string, issued_date date, status string")
    got = image_fill.labels_without_image(certificates, stored, TODAY)  # issued 2024-02-29: due from 2024-03-02, the day after TODAY
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)
