"""Reference data: seed snapshot, class/type hierarchy, origin codes, refresh from the registry's
lookup pages over real loopback HTTP, fallback to the seed, MERGE that never wipes or downgrades."""

from __future__ import annotations

import csv
import http.server
import io
import threading
from importlib import resources

import pytest
from pyspark.sql import functions as F

from conftest import make_settings
from ttb_spark import lakehouse, reference
from ttb_spark.scope import Whole


def test_transcribed_list_lines_expand_ranges_and_alternatives():
    text = "=== WHISKY ===\n101    STRAIGHT BOURBON WHISKY\n181-183  WHISKY FLAVORED (ORANGE, GRAPE)\n80A    ROSE WINE\n0/00/000  ADMINISTRATIVE WITHDRAWAL\nCode   Description\n"
    assert reference.parse_code_list(text) == [
        ("101", "STRAIGHT BOURBON WHISKY", False),
        ("181", "WHISKY FLAVORED (ORANGE, GRAPE)", True),
        ("182", "WHISKY FLAVORED (ORANGE, GRAPE)", True),
        ("183", "WHISKY FLAVORED (ORANGE, GRAPE)", True),
        ("80A", "ROSE WINE", False),
        ("0", "ADMINISTRATIVE WITHDRAWAL", False),
        ("00", "ADMINISTRATIVE WITHDRAWAL", False),
        ("000", "ADMINISTRATIVE WITHDRAWAL", False),
    ]


@pytest.mark.parametrize(
    ("code", "description", "expected"),
    [
        ("102", "STRAIGHT RYE WHISKY", ("DISTILLED SPIRITS", "WHISKY")),
        ("268", "OTHER GIN FB", ("DISTILLED SPIRITS", "GIN")),
        ("301", "VODKA 80-89 PROOF", ("DISTILLED SPIRITS", "VODKA")),
        ("411", "PUERTO RICAN RUM (GOLD)", ("DISTILLED SPIRITS", "RUM")),
        ("551", "COGNAC (BRANDY) FB", ("DISTILLED SPIRITS", "BRANDY")),
        ("643", "VODKA SPECIALTIES", ("DISTILLED SPIRITS", "CORDIALS & LIQUEURS")),
        ("81", "TABLE WHITE WINE", ("WINE", "TABLE WINE")),
        ("80A", "ROSE WINE", ("WINE", "TABLE WINE")),
        ("84", "SPARKLING WINE/CHAMPAGNE", ("WINE", "SPARKLING WINE")),
        ("82C", "APPLE BASED FLAVORED WINE", ("WINE", "CIDER")),
        ("82M", "HONEY BASED TABLE WINE", ("WINE", "MEAD")),
        ("88", "DESSERT /PORT/SHERRY/(COOKING) WINE", ("WINE", "DESSERT WINE")),
        ("901", "BEER", ("MALT BEVERAGE", "BEER")),
        ("902", "ALE", ("MALT BEVERAGE", "ALE")),
        ("954", "STOUT FB", ("MALT BEVERAGE", "STOUT")),
        ("931", "SAKE", ("WINE", "SAKE")),
        ("976", "TEQUILA FB", ("DISTILLED SPIRITS", "AGAVE SPIRITS")),
        ("921", "NEUTRAL SPIRITS - GRAIN", ("DISTILLED SPIRITS", "OTHER SPIRITS")),
        ("990", "NON ALCOHOL MIXES", (None, "NON-ALCOHOLIC MIXES")),
        ("000", "ADMINISTRATIVE WITHDRAWAL", (None, "ADMINISTRATIVE")),
        ("X1", "SOMETHING NEW", (None, "UNCLASSIFIED")),
    ],
)
def test_class_type_hierarchy(code, description, expected):
    assert reference.classify_class_type(code, description) == expected


def test_spark_hierarchy_columns_agree_with_the_python_rules(spark):
    rows = [r for r in reference.seed_rows() if r.ref_type == "class_type"] + [reference.class_type_row("976", "TEQUILA FB", "observed")]
    # a range's shared text is not used to classify (see reference.class_type_row)
    df = spark.createDataFrame([(r.code, None if r.source == "seed_range" else r.description) for r in rows], "code string, description string")
    ptype, family = reference.class_type_hierarchy_columns(F.col("code"), F.col("description"))
    got = {(r["code"], r["product_type"], r["family"]) for r in df.select("code", ptype.alias("product_type"), family.alias("family")).collect()}
    assert got == {(r.code, r.product_type, r.family) for r in rows}


@pytest.mark.parametrize(
    ("code", "description", "domestic", "state"),
    [
        ("08", "GEORGIA", True, "GA"),
        ("6E", "GEORGIA", False, None),
        ("4A", "PUERTO RICO", True, "PR"),
        ("4B", "VIRGIN ISLANDS, US", True, "VI"),
        ("4K", "DISTRICT OF COLUMBIA", True, "DC"),
        ("00", "AMERICAN", True, None),
        ("5K", "SCOTLAND", False, None),
    ],
)
def test_origin_codes(code, description, domestic, state):
    row = reference.origin_row(code, description, "seed_list")
    assert (row.is_domestic, row.state_code) == (domestic, state)


def test_seed_snapshot():
    rows = reference.seed_rows()
    by_key = {(r.ref_type, r.code): r for r in rows}
    assert len(by_key) == len(rows)
    observed = csv.DictReader(io.StringIO(resources.files("ttb_spark").joinpath("data/reference/observed-codes.csv").read_text()))
    for rec in observed:  # every code/description pair the saved pages show is in the seed, as shown
        assert by_key[("class_type", rec["class_type_code"])].description == rec["class_type_description"]
        assert by_key[("origin", rec["origin_code"])].description == rec["origin_description"]
    # a page's pairing beats the transcribed range (699 lies in "650-699 IMPORTED CORDIALS")
    assert (by_key[("class_type", "699")].description, by_key[("class_type", "699")].source) == ("OTHER SPECIALTIES & PROPRIETARIES", "observed")
    assert by_key[("class_type", "698")].source == "seed_range"
    assert {c for t, c in by_key if t == "receipt_method"} == {"000", "001", "002", "003"}
    assert {c for t, c in by_key if t == "status"} == {"APPROVED", "EXPIRED", "SURRENDERED", "REVOKED"}
    assert {c for t, c in by_key if t == "product_type"} == {"WINE", "DISTILLED SPIRITS", "MALT BEVERAGE"}
    assert len([k for k in by_key if k[0] == "origin"]) > 220


def _lookup_page(rows: list[tuple[str, str]]) -> bytes:
    body = "".join(f"<tr><td>{code}</td><td>{desc}</td></tr>" for code, desc in rows)
    return f"<html><body><table><tr><th>Code</th><th>Description</th></tr>{body}</table></body></html>".encode("iso-8859-1")


@pytest.fixture()
def lookup_server():
    """A loopback HTTP server answering the two lookup pages (page bodies set by the test)."""
    pages: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            path = self.path.split("/colasonline/", 1)[-1]
            body = pages.get(path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/html; charset=iso-8859-1")
            self.end_headers()
            self.wfile.write(body or b"<html><h1>Error</h1>Unable to process request</html>")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/colasonline/", pages
    finally:
        server.shutdown()
        server.server_close()


def _settings(tmp_path, base_url):
    return make_settings(tmp_path, extraction={"registry_base_url": base_url, "use_simulator": False})


def _table(spark, settings):
    rows = lakehouse.read_table(spark, reference.REFERENCE_DATA, settings.pipeline.lakehouse_root).collect()
    return {(r["ref_type"], r["code"]): r for r in rows}


def test_refresh_from_lookup_pages_then_fallback_never_wipes_or_downgrades(spark, tmp_path, lookup_server):
    base_url, pages = lookup_server
    scope = Whole()
    seed = reference.seed_rows()
    class_rows = [(r.code, r.description) for r in seed if r.ref_type == "class_type" and r.source != "seed_range"]
    class_rows = [(c, "STRAIGHT RYE WHISKEY" if c == "102" else d) for c, d in class_rows] + [("944", "TEQUILA FB")]
    pages[reference.CLASS_TYPE_LOOKUP] = _lookup_page(class_rows)
    origin_rows = [(r.code, r.description) for r in seed if r.ref_type == "origin"]
    pages[reference.ORIGIN_LOOKUP] = _lookup_page(origin_rows)
    settings = _settings(tmp_path, base_url)

    counts = reference.run(spark, settings, scope)
    assert counts["from_registry"] == 1 and counts["registry_rows"] == len(class_rows) + len(origin_rows)
    table = _table(spark, settings)
    assert (table[("class_type", "102")]["description"], table[("class_type", "102")]["source"]) == ("STRAIGHT RYE WHISKEY", "registry")
    assert (table[("class_type", "944")]["family"], table[("class_type", "944")]["product_type"]) == ("AGAVE SPIRITS", "DISTILLED SPIRITS")
    assert table[("class_type", "698")]["source"] == "seed_range"  # not on the (test) lookup page: kept from the seed
    assert ("us_state", "NY") in table and ("status", "SURRENDERED") in table

    pages.clear()  # registry answers error pages now: fall back to the seed
    counts = reference.run(spark, settings, scope)
    assert counts["from_registry"] == 0 and counts["updated"] == 0
    after = _table(spark, settings)
    assert after.keys() == table.keys()
    assert after[("class_type", "102")]["description"] == "STRAIGHT RYE WHISKEY"  # the registry's row is not downgraded


def test_unreachable_registry_seeds_the_table(spark, tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = _settings(tmp_path, f"http://127.0.0.1:{port}/colasonline/")
    assert reference.fetch_lookup_rows(settings) == []
    assert reference.ensure_seeded(spark, settings)["inserted"] == len(reference.seed_rows())
    assert reference.ensure_seeded(spark, settings)["inserted"] == 0  # exists now: left alone
    table = _table(spark, settings)
    assert table[("origin", "5K")]["description"] == "SCOTLAND" and table[("receipt_method", "001")]["description"] == "E-FILED"


def test_short_or_error_lookup_page_is_not_the_list():
    error_page = resources.files("ttb_spark").joinpath("data/pages/_error/not-found.html").read_bytes()
    assert reference.parse_lookup_page(error_page, "origin") == []
    rows = reference.parse_lookup_page(_lookup_page([("5K", "Scotland"), ("08", "GEORGIA")]), "origin")
    assert [(r.code, r.description, r.state_code) for r in rows] == [("5K", "SCOTLAND", None), ("08", "GEORGIA", "GA")]
    assert len(rows) < reference.MIN_LOOKUP_ROWS
