"""The registry simulator over real HTTP: URL scheme, pages that parse to the right records, the
real error page for misses, volumes and gaps, determinism, cookies, every fault, label images behind the
session rule and the 48-hour delay, the CLI."""

from __future__ import annotations

import io
import statistics
import subprocess
import sys
from collections import Counter
from datetime import date, timedelta
from urllib.parse import quote

import pytest
import requests
from PIL import Image

from ttb_spark.registry import parse, simulator
from ttb_spark.registry.simulator import images
from ttb_spark.registry.ttb_id import TTBId

DAY = date(2024, 1, 2)


def url(base: str, action: str, ttb_id: str) -> str:
    return f"{base}viewColaDetails.do?action={action}&ttbid={ttb_id}"


def test_pages_render_from_every_template_and_parse_to_their_record():
    registry = simulator.SyntheticRegistry(seed=3, scale=1.0)
    records = [registry.record(i) for i in registry.public_ids(DAY, "001")]
    templates = {r.template for r in records}
    assert templates == set(range(18))  # every saved real page pair is in use
    for record in records[:60]:
        detail = parse.parse_page(registry.render(record, "cola-detail"), record.ttb_id, "detail")
        cert = parse.parse_page(registry.render(record, "certificate"), record.ttb_id, "certificate")
        assert detail.kind == "detail" and cert.kind == "certificate", (detail.reason, cert.reason)
        for rec in (detail.record, cert.record):
            assert rec["ttb_id"] == record.ttb_id and rec["brand_name"] == record.brand
            assert rec["serial_number"] == record.serial
        assert cert.record["application_date"] == DAY.isoformat()
        assert detail.record["approval_date"] == cert.record["issued_date"] >= DAY.isoformat()


def test_volumes_gaps_and_determinism():
    registry = simulator.SyntheticRegistry(seed=0, scale=1.0)
    weekdays = [DAY + timedelta(days=d) for d in range(14) if (DAY + timedelta(days=d)).weekday() < 5]
    for day in weekdays:
        sequences = registry.public_sequences(day, "001")
        assert 250 <= len(sequences) <= 450
        assert max(b - a - 1 for a, b in zip(sequences, sequences[1:])) > 50  # a run longer than the default threshold
        assert min(b - a - 1 for a, b in zip(sequences, sequences[1:])) == 0
        for paper in ("000", "002", "003"):
            assert len(registry.public_sequences(day, paper)) <= 3
    assert simulator.SyntheticRegistry(0, 1.0).public_ids(DAY, "001") == registry.public_ids(DAY, "001")
    assert simulator.SyntheticRegistry(1, 1.0).public_ids(DAY, "001") != registry.public_ids(DAY, "001")
    small = simulator.SyntheticRegistry(0, 0.05).public_sequences(DAY, "001")
    assert 10 <= len(small) <= 25


def test_http_scheme_cookie_and_error_page():
    with simulator.running(seed=0, scale=0.05) as sim:
        public = sim.registry.public_ids(DAY, "001")[0]
        missing = str(TTBId.build(DAY, "001", 999_999))
        with requests.Session() as session:
            first = session.get(url(sim.base_url, "publicDisplaySearchAdvanced", public))
            assert "JSESSIONID" in first.cookies and first.headers["Content-Type"].endswith("ISO-8859-1")
            basic = session.get(url(sim.base_url, "publicDisplaySearchBasic", public))
            assert "Set-Cookie" not in basic.headers and basic.content == first.content
            form = session.get(url(sim.base_url, "publicFormDisplay", public))
            assert parse.classify(form.content, public, "certificate").kind == "certificate"
            miss = session.get(url(sim.base_url, "publicDisplaySearchAdvanced", missing))
            assert miss.status_code == 200 and miss.content == simulator.error_page()
            assert parse.classify(miss.content, missing, "detail").kind == "not_found"
            assert session.get(url(sim.base_url, "publicDisplaySearchAdvanced", "1234")).content == simulator.error_page()
            assert session.get(sim.base_url + "nothing.do").status_code == 404
        assert sim.wait_for_hits(6, timeout=5)
        assert not sim.wait_for_hits(7, timeout=0.01)
        answers = [h.answer for h in sim.hits]
    assert answers == ["page", "page", "page", "not_found", "bad_request", "bad_request"]


@pytest.mark.parametrize(
    "fault,expect",
    [
        ("rate_limit", 429), ("server_error", None), ("truncate", "truncated"),
        ("session_timeout", "session_timeout"), ("captcha", "captcha"), ("reset", "reset"),
    ],
)
def test_each_fault_strikes_the_first_hits_only(fault, expect):
    with simulator.running(seed=0, scale=0.05, faults={fault: 1.0, "first_hits": 1, "retry_after": 3}) as sim:
        ttb_id = sim.registry.public_ids(DAY, "001")[0]
        target = url(sim.base_url, "publicDisplaySearchAdvanced", ttb_id)
        with requests.Session() as session:
            if fault == "reset":
                with pytest.raises(requests.ConnectionError):
                    session.get(target)
            else:
                first = session.get(target)
                if fault == "rate_limit":
                    assert first.status_code == 429 and first.headers["Retry-After"] == "3"
                elif fault == "server_error":
                    assert first.status_code in (500, 503)
                else:
                    assert parse.classify(first.content, ttb_id, "detail").reason == expect
            if fault == "session_timeout":
                # the session stays expired: the same cookie keeps getting the timeout page
                again = session.get(target)
                assert parse.classify(again.content, ttb_id, "detail").reason == "session_timeout"
        with requests.Session() as fresh:
            good = fresh.get(target)
        assert parse.classify(good.content, ttb_id, "detail").kind == "detail"
    assert sim.hits[0].answer == fault


def image_url(base: str, file_name: str) -> str:
    return f"{base}{images.ROUTE}?filename={quote(file_name, safe='')}&filetype=l"


def test_label_images_of_every_template_follow_their_certificate_in_the_same_session():
    """Each certificate's labels (as the product's parser reads them) are served right after it in its session:
    an image of the format its file name says, the aspect ratio of its actual dimensions, the same bytes again."""
    registry = simulator.SyntheticRegistry(seed=3, scale=1.0)
    by_template = {}
    for ttb_id in registry.public_ids(DAY, "001"):
        by_template.setdefault(registry.record(ttb_id).template, ttb_id)
    assert len(by_template) == 18
    with simulator.running(seed=3, scale=1.0) as sim, requests.Session() as session:
        served = 0
        for ttb_id in by_template.values():
            form = session.get(url(sim.base_url, "publicFormDisplay", ttb_id)).content
            parsed = parse.parse_page(form, ttb_id, "certificate").record["labels"]
            shown = images.labels(form)
            assert [lab.file_name for lab in shown] == [p["filename"] for p in parsed], ttb_id
            assert [(lab.width_inches, lab.height_inches) for lab in shown] == [(p["width_inches"], p["height_inches"]) for p in parsed]
            for label in shown:
                answer = session.get(image_url(sim.base_url, label.file_name))
                assert answer.status_code == 200 and answer.headers["Content-Type"] == label.content_type, (ttb_id, label)
                image = Image.open(io.BytesIO(answer.content))
                assert Image.MIME[image.format] == label.content_type
                width, height = image.size
                assert abs(width / height - label.width_inches / label.height_inches) <= 2 / min(width, height), (label, image.size)
                assert session.get(image_url(sim.base_url, label.file_name)).content == answer.content
                served += 1
        assert served >= 18
        assert Counter(h.answer for h in sim.hits if h.data_type == "label-image") == {"image": 2 * served}


def test_a_label_image_outside_its_certificates_session_or_within_48_hours_of_approval_is_the_error_page():
    registry = simulator.SyntheticRegistry(seed=0, scale=0.05)
    first, other = (registry.record(i) for i in registry.public_ids(DAY, "001")[:2])
    label = images.labels(registry.render(first, "certificate"))[0]
    foreign = [lab for lab in images.labels(registry.render(other, "certificate")) if lab.file_name != label.file_name][0]
    with simulator.running(seed=0, scale=0.05, today=first.approval_date + timedelta(days=1)) as sim:
        def kind(session: requests.Session, file_name: str) -> str:
            answer = session.get(image_url(sim.base_url, file_name))
            assert answer.status_code == 200
            if answer.headers["Content-Type"].startswith("text/html"):
                assert answer.content == simulator.error_page()
                return "error page"
            return "image"

        with requests.Session() as session:
            assert kind(session, label.file_name) == "error page"  # a session that viewed no form
            session.get(url(sim.base_url, "publicFormDisplay", first.ttb_id))
            assert kind(session, label.file_name) == "error page"  # a day after approval: not there yet
            sim.today = first.approval_date + images.DELAY
            assert kind(session, label.file_name) == "image"
            assert kind(session, foreign.file_name) == "error page"  # another form's label
            session.get(url(sim.base_url, "publicFormDisplay", str(TTBId.build(DAY, "001", 999_999))))
            assert kind(session, label.file_name) == "error page"  # the last form viewed was the error page
        with requests.Session() as fresh:
            fresh.get(url(sim.base_url, "publicFormDisplay", first.ttb_id))
            assert kind(fresh, label.file_name) == "image"
    assert images.available(date(1999, 1, 4), None) and not images.available(date(1998, 12, 31), None)


def test_label_image_faults_strike_images_only():
    faults = {"server_error": 1.0, "first_hits": 1, "data_types": ("label-image",)}
    with simulator.running(seed=0, scale=0.05, faults=faults) as sim, requests.Session() as session:
        ttb_id = sim.registry.public_ids(DAY, "001")[0]
        form = session.get(url(sim.base_url, "publicFormDisplay", ttb_id))
        assert parse.classify(form.content, ttb_id, "certificate").kind == "certificate"
        label = images.labels(form.content)[0]
        assert session.get(image_url(sim.base_url, label.file_name)).status_code in (500, 503)
        assert session.get(image_url(sim.base_url, label.file_name)).headers["Content-Type"] == label.content_type
    assert [(h.data_type, h.answer, h.ttb_id) for h in sim.hits] == [
        ("certificate", "page", ttb_id), ("label-image", "server_error", ttb_id), ("label-image", "image", ttb_id)]


def test_cli_lists_public_ids_and_rejects_unknown_faults():
    listed = subprocess.run(
        [sys.executable, "-m", "ttb_spark", "simulate-registry", "--seed", "0", "--scale", "0.05", "--list-public", DAY.isoformat()],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    registry = simulator.SyntheticRegistry(0, 0.05)
    assert listed == [i for m in ("000", "001", "002", "003") for i in registry.public_ids(DAY, m)]
    bad = subprocess.run(
        [sys.executable, "-m", "ttb_spark", "simulate-registry", "--fault", "meteor=0.5"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown fault 'meteor'" in bad.stderr


def test_serving_yields_a_base_url_that_answers():
    with simulator.serving(seed=0, scale=0.05) as base_url:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/colasonline/")
        ttb_id = simulator.SyntheticRegistry(0, 0.05).public_ids(DAY, "001")[0]
        page = requests.get(url(base_url, "publicDisplaySearchAdvanced", ttb_id), timeout=5).content
    assert parse.parse_page(page, ttb_id, "detail").record["ttb_id"] == ttb_id


def test_registry_profile_has_a_real_days_volume_and_cardinalities():
    registry = simulator.SyntheticRegistry(seed=0, scale=1.0, profile="registry")
    week = [DAY + timedelta(days=d) for d in range(7)]
    efiled = {day: registry.public_ids(day, "001") for day in week}
    assert all(600 <= len(ids) <= 1300 for day, ids in efiled.items() if day.weekday() < 5)
    assert all(len(ids) < 100 for day, ids in efiled.items() if day.weekday() >= 5)
    records = [registry.record(i) for ids in efiled.values() for i in ids]
    filings = Counter(r.value("permit", None) for r in records)
    assert len(filings) > 1_500 and max(filings.values()) > 25 * sorted(filings.values())[len(filings) // 2]  # long tail
    assert len({r.brand for r in records}) > 0.6 * len(records)
    assert len({r.value("class_type_code", None) for r in records}) > 150 and len({r.value("origin_code", None) for r in records}) > 100
    for record in records[:40]:
        detail = parse.parse_page(registry.render(record, "cola-detail"), record.ttb_id, "detail").record
        cert = parse.parse_page(registry.render(record, "certificate"), record.ttb_id, "certificate").record
        listing = registry.listing(record.ttb_id, record.approval_date)
        assert detail["permit_number"] == cert["permit_numbers"][0] == listing.permit_number == record.value("permit", None)
        assert cert["class_type_code"] == listing.class_type_code and cert["origin_code"] == listing.origin_code
        assert detail["class_type_description"] == listing.class_type_description
        assert detail["origin_description"] == listing.origin_description and detail["brand_name"] == record.brand
    assert simulator.SyntheticRegistry(0, 1.0, "registry").record(records[0].ttb_id) == records[0]  # deterministic by seed
    assert all(r.approval_date.weekday() < 5 for r in records)  # approvals on working days only


def test_registry_profile_weekdays_complete_as_their_workload_says_so_a_busy_one_passes_the_search_cap():
    """Issue #22 (2): the registry completes far more on some weekdays than on others. A weekday's approvals follow
    its drawn workload, so at scale 1.0 a busy weekday (workload near 1.4) completes ~1,300, over the 1,000-row cap."""
    from ttb_spark.registry.simulator import registry as model

    scale, first, last = 0.1, date(2024, 6, 3), date(2024, 6, 28)
    approvals = Counter(r.completed_date for r in simulator.SyntheticRegistry(0, scale, "registry").completed_between(first, last, last + timedelta(days=400))
                        if r.completed_date.weekday() < 5)
    days = sorted(approvals)
    load = [model.workload(0, d) for d in days]
    mean = sum(approvals.values()) / len(days) / (sum(load) / len(load))  # approvals per unit of workload
    assert len(days) == 20 and statistics.correlation(load, [approvals[d] for d in days]) > 0.8
    assert mean * model.WORKLOAD[1] / scale > 1_250 and mean * model.WORKLOAD[0] / scale < 700
