"""The registry client against the simulator over real HTTP(S): TLS verification with an extra CA,
session cookie and User-Agent, Retry-After, URL building."""

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
from ttb_spark.registry.client import (
    DEFAULT_EXTRA_CA,
    Pacer,
    RegistryClient,
    RegistryTLSError,
    ca_bundle,
    page_url,
    retry_after_seconds,
)
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
