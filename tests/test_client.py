"""The registry client against the simulator over real HTTP(S): TLS verification with an extra CA,
session cookie and User-Agent, Retry-After, URL building, label images in their certificate's session."""

from __future__ import annotations

import datetime as dt
from datetime import date, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import make_settings
from ttb_spark.registry import search, simulator
from ttb_spark.raw.storage import image_key
from ttb_spark.registry.client import (
    DEFAULT_EXTRA_CA,
    Pacer,
    RegistryClient,
    RegistryTLSError,
    ca_bundle,
    image_url,
    image_whole,
    page_url,
    retry_after_seconds,
)
from ttb_spark.registry.simulator import images
from ttb_spark.registry.ttb_id import TTBId

DAY = date(2024, 1, 2)


def client_for(tmp_path: Path, base_url: str, **extraction) -> RegistryClient:
    settings = make_settings(tmp_path, extraction={"registry_base_url": base_url} | extraction)
    return RegistryClient(settings.extraction, Pacer(0))


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[str, str]:
    """A self-signed CA certificate for ``localhost`` and its key (PEM files)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_is_verified_and_the_failure_names_the_fix(tmp_path, self_signed):
    with simulator.running(seed=0, scale=0.05, tls=self_signed) as sim:
        ttb_id = TTBId(sim.registry.public_ids(DAY, "001")[0])
        client = client_for(tmp_path, sim.base_url)
        with pytest.raises(RegistryTLSError, match="TTB_EXTRA_CA_BUNDLE") as failure:
            client.fetch("cola-detail", ttb_id)
        assert "never turned off" in str(failure.value)
        assert sim.hits == []  # the handshake failed: no request was answered
        trusted = client_for(tmp_path, sim.base_url, extra_ca_bundle=self_signed[0])
        fetched = trusted.fetch("cola-detail", ttb_id)
        assert fetched.outcome == "found" and ttb_id.value.encode() in fetched.body
        client.close()
        trusted.close()


def test_ca_bundle_is_certifi_plus_the_extra_certificate(tmp_path, self_signed):
    from importlib import resources

    shipped = resources.files("ttb_spark").joinpath(DEFAULT_EXTRA_CA).read_bytes()
    default = Path(ca_bundle()).read_bytes()
    roots = Path(certifi.where()).read_bytes()
    assert default.startswith(roots.rstrip(b"\n")) and default.endswith(shipped)
    custom = Path(ca_bundle(self_signed[0])).read_bytes()
    assert custom.endswith(Path(self_signed[0]).read_bytes()) and shipped not in custom


def test_session_cookie_is_kept_and_user_agent_is_descriptive(tmp_path):
    with simulator.running(seed=0, scale=0.05) as sim:
        client = client_for(tmp_path, sim.base_url)
        ids = [TTBId.build(DAY, "001", s) for s in range(1, 6)]
        outcomes = [client.fetch("cola-detail", i).outcome for i in ids]
        hits = sim.hits
        client.close()
    public = set(sim.registry.public_ids(DAY, "001"))
    assert outcomes == ["found" if str(i) in public else "not_found" for i in ids]
    assert len({h.session for h in hits}) == 1 and client.sessions_started == 1
    assert all(h.user_agent == client.settings.user_agent and "ttb_spark" in h.user_agent for h in hits)


def test_retry_after_header_values():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(format_datetime(now + dt.timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_seconds(format_datetime(now - dt.timedelta(seconds=30), usegmt=True), now) == 0.0
    assert retry_after_seconds("soon", now) == 0.0 and retry_after_seconds(None, now) == 0.0
    assert retry_after_seconds("86400", now) == 300.0  # capped


def test_page_urls_follow_the_registry_scheme():
    ttb_id = TTBId("24011001000462")
    base = "https://www.ttbonline.gov/colasonline/"
    assert page_url(base, "cola-detail", ttb_id) == (
        "https://www.ttbonline.gov/colasonline/viewColaDetails.do?action=publicDisplaySearchAdvanced&ttbid=24011001000462"
    )
    assert page_url(base, "certificate", ttb_id).endswith("viewColaDetails.do?action=publicFormDisplay&ttbid=24011001000462")
    with pytest.raises(TypeError):
        page_url(base, "cola-detail", "24011001000462")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        page_url(base, "label-image", ttb_id)


@pytest.mark.parametrize("faults, starts", [
    # every search request fails its first 3 tries: retried in place, the search is never started again
    ({"server_error": 1.0, "first_hits": 3, "data_types": ("search",)}, 1),
    # every answer is cut short once: the export is unusable, and a ``nextset`` cut short is not asked again
    # (the server's cursor has moved), so the search starts over once
    ({"truncate": 1.0, "first_hits": 1, "data_types": ("search",)}, 2),
])
def test_a_search_retries_each_request_in_place_and_starts_over_only_when_a_later_page_fails(tmp_path, faults, starts):
    window = search.Criteria(date(2024, 1, 8), date(2024, 1, 12))
    with simulator.running(seed=0, scale=0.3, faults=faults) as sim:
        truth = sim.search(window)
        client = client_for(tmp_path, sim.base_url)  # the test profile: 4 retries
        answer = client.search(window)
        client.close()
    assert len(truth) > 2 * search.PAGE_ROWS
    assert [(r.ttb_id, r.completed_date) for r in answer.rows] == [(r.ttb_id, r.completed_date) for r in truth]
    assert answer.total == len(truth) and answer.attempts == starts


def _labelled(sim) -> tuple[TTBId, list[images.Label], TTBId]:
    """A record with two labels or more, its labels, and another public record."""
    ids = sim.registry.public_ids(DAY, "001")
    for ttb_id in ids:
        shown = images.labels(sim.registry.render(sim.registry.record(ttb_id), "certificate"))
        if len(shown) >= 2:
            return TTBId(ttb_id), list(shown), TTBId(next(i for i in ids if i != ttb_id))
    raise AssertionError("no record with two labels")


def _served(sim, ttb_id: TTBId, label: images.Label) -> bytes:
    return images.image_of(sim.registry.record(str(ttb_id)), label)


def test_label_images_are_fetched_in_their_certificates_session_and_checked_whole(tmp_path):
    """Right after the certificate, one request per image; asked for first, or after another record's
    certificate, the client shows the session the right form before the image."""
    with simulator.running(seed=0, scale=0.05) as sim:
        ttb_id, labels, other = _labelled(sim)
        client = client_for(tmp_path, sim.base_url)
        assert client.fetch("certificate", ttb_id).outcome == "found"
        for label in labels:
            got = client.fetch_image(ttb_id, label.file_name)
            assert (got.outcome, got.content_type, got.attempts) == ("found", label.content_type, 1)
            assert got.body == _served(sim, ttb_id, label) and image_whole(got.body, got.content_type)
        assert [h.data_type for h in sim.hits] == ["certificate"] + ["label-image"] * len(labels)
        client.fetch("certificate", other)
        again = client.fetch_image(ttb_id, labels[0].file_name)
        assert again.outcome == "found" and again.body == _served(sim, ttb_id, labels[0])
        assert [(h.data_type, h.ttb_id) for h in sim.hits[-3:]] == [("certificate", str(other)), ("certificate", str(ttb_id)),
                                                                     ("label-image", str(ttb_id))]
        fresh = client_for(tmp_path, sim.base_url)
        assert fresh.fetch_image(ttb_id, labels[1].file_name).outcome == "found" and fresh.requests_sent == 2
        with pytest.raises(TypeError):
            client.fetch_image(str(ttb_id), labels[0].file_name)  # type: ignore[arg-type]
        client.close()
        fresh.close()


def test_an_image_not_there_yet_is_missing_after_one_request(tmp_path):
    with simulator.running(seed=0, scale=0.05) as sim:
        ttb_id, labels, _ = _labelled(sim)
        sim.today = sim.registry.record(str(ttb_id)).approval_date + timedelta(days=1)
        client = client_for(tmp_path, sim.base_url)
        got = client.fetch_image(ttb_id, labels[0].file_name)
        assert (got.outcome, got.body, got.attempts) == ("missing", None, 1)
        assert [h.answer for h in sim.hits] == ["page", "no_image"]
        sim.today += images.DELAY
        assert client.fetch_image(ttb_id, labels[0].file_name).outcome == "found"
        client.close()


@pytest.mark.parametrize("fault", ["session_timeout", "truncate", "server_error", "reset", "captcha"])
def test_an_image_fault_is_retried_until_the_whole_image_comes(tmp_path, fault):
    """A timeout page renews the session (so the certificate is shown again), a cut-short image is retried."""
    faults = {fault: 1.0, "first_hits": 1, "data_types": ("label-image",), "retry_after": 0}
    with simulator.running(seed=0, scale=0.05, faults=faults) as sim:
        ttb_id, labels, _ = _labelled(sim)
        client = client_for(tmp_path, sim.base_url, backoff_max_seconds=0.01)
        got = client.fetch_image(ttb_id, labels[0].file_name)
        assert (got.outcome, got.attempts) == ("found", 2) and got.body == _served(sim, ttb_id, labels[0])
        pages = [h.data_type for h in sim.hits if h.data_type == "certificate"]
        assert len(pages) == (2 if fault == "session_timeout" else 1)
        client.close()


def test_image_urls_and_keys_never_carry_a_file_name_unquoted():
    hostile = "../../etc/passwd & action=x+1 #?.jpg"
    url = image_url("https://example.test/colasonline/", hostile)
    assert url.startswith("https://example.test/colasonline/publicViewAttachment.do?filename=") and url.endswith("&filetype=l")
    assert not set(url.split("filename=")[1].split("&filetype")[0]) & set("/ &+#?")
    ttb_id = TTBId("24002001000001")
    key = image_key(ttb_id, 1, hostile)
    assert key.startswith("images/receipt_date=2024-01-02/24002001000001/01-") and ".." not in key and " " not in key
    assert key == image_key(ttb_id, 1, hostile) != image_key(ttb_id, 1, hostile + " ") != image_key(ttb_id, 2, hostile)
    for bad in (0, 100, "1"):
        with pytest.raises(ValueError):
            image_key(ttb_id, bad, hostile)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        image_key("24002001000001", 1, hostile)  # type: ignore[arg-type]
    assert image_whole(b"\xff\xd8 body \xff\xd9", "image/jpeg") and not image_whole(b"\xff\xd8 body", "image/jpeg")
    assert image_whole(b"GIF89a ... \x3b", "image/gif") and not image_whole(b"GIF89a ...", "image/gif")
