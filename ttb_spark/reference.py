"""Reference data (the original ``ttb_reference_data``): class/type codes with a category
hierarchy, origin codes, receipt methods, statuses, product types and US states.

One Delta table, ``gold.ttb_reference_data``, keyed by (ref_type, code). It starts from a seed
snapshot shipped as package data (``data/reference/``: the transcribed TTB code lists plus the
code/description pairs the saved pages show) and the ``reference`` stage refreshes it from the
registry's lookup pages when the registry answers. Either way it is MERGEd, never wiped, and a
row from a better source is never overwritten by a worse one (registry > observed pages >
transcribed list > expanded range of the transcribed list).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Iterable

from pyspark.sql.types import BooleanType, StringType, StructType

from ttb_spark import lakehouse
from ttb_spark.lakehouse import TableSpec, column
from ttb_spark.settings import RECEIPT_METHODS, Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from ttb_spark.scope import Whole

SEED_DIR = "data/reference"
CLASS_TYPE_LOOKUP = "lookupProductClassTypeCode.do?action=search&display=all"
ORIGIN_LOOKUP = "lookupOriginCode.do?action=search&display=all"
# A lookup page with fewer rows than this is an error/timeout page, not the list (~530 / ~233 rows).
MIN_LOOKUP_ROWS = 100

SOURCE_RANK: dict[str, int] = {"seed_range": 0, "seed_list": 1, "observed": 2, "registry": 3}
STATUSES: dict[str, str] = {
    "APPROVED": "approved; the label may be used",
    "EXPIRED": "approval expired",
    "SURRENDERED": "approval surrendered by the permit holder",
    "REVOKED": "approval revoked by TTB",
}
PRODUCT_TYPES: dict[str, str] = {
    "WINE": "wine (27 CFR part 4)",
    "DISTILLED SPIRITS": "distilled spirits (27 CFR part 5)",
    "MALT BEVERAGE": "malt beverages (27 CFR part 7)",
}
# Origin codes that are US places besides the numeric 00-49 block (PR, VI, AK, DC, Guam).
DOMESTIC_ORIGIN_CODES = frozenset({"4A", "4B", "4E", "4K", "9Q"})

_SPIRITS, _WINE, _MALT = "DISTILLED SPIRITS", "WINE", "MALT BEVERAGE"
# The class/type category hierarchy: product type -> family, by code pattern (and description
# pattern where the code block is shared). First match wins; used in Python for the reference
# table and as a Spark expression for codes only seen in data.
HIERARCHY_RULES: tuple[tuple[str, str | None, str | None, str], ...] = (
    (r"^0{1,3}$", None, None, "ADMINISTRATIVE"),
    (r"^8\dC$", None, _WINE, "CIDER"),
    (r"^8\dM$", None, _WINE, "MEAD"),
    (r"^8[0-3]A?$", None, _WINE, "TABLE WINE"),
    (r"^8[45]$", None, _WINE, "SPARKLING WINE"),
    (r"^86$", None, _WINE, "VERMOUTH"),
    (r"^8[7-9]$", None, _WINE, "DESSERT WINE"),
    (r"^8\d[A-Z]?$", None, _WINE, "OTHER WINE"),
    (r"^1\d\d$", None, _SPIRITS, "WHISKY"),
    (r"^2\d\d$", None, _SPIRITS, "GIN"),
    (r"^3\d\d$", None, _SPIRITS, "VODKA"),
    (r"^4\d\d$", None, _SPIRITS, "RUM"),
    (r"^5\d\d$", None, _SPIRITS, "BRANDY"),
    (r"^6\d\d$", None, _SPIRITS, "CORDIALS & LIQUEURS"),
    (r"^7\d\d$", None, _SPIRITS, "COCKTAILS & MIXED DRINKS"),
    (r"^9[05]0$", None, _MALT, "MALT BEVERAGE"),
    (r"^9[05]1$", None, _MALT, "BEER"),
    (r"^9[05]2$", None, _MALT, "ALE"),
    (r"^9[05]3$", None, _MALT, "MALT LIQUOR"),
    (r"^9[05]4$", None, _MALT, "STOUT"),
    (r"^9[05]5$", None, _MALT, "PORTER"),
    (r"^9[05]6$", None, _MALT, "FLAVORED MALT BEVERAGE"),
    (r"^9[05]7$", None, _MALT, "NEAR BEER (NON-ALCOHOLIC)"),
    (r"^9[05][89]$", None, _MALT, "OTHER MALT BEVERAGE"),
    (r"^99\d$", None, None, "NON-ALCOHOLIC MIXES"),
    (r"^9\d\d$", r"SAKE", _WINE, "SAKE"),
    (r"^9\d\d$", r"TEQUILA|MEZCAL|AGAVE", _SPIRITS, "AGAVE SPIRITS"),
    (r"^9\d\d$", None, _SPIRITS, "OTHER SPIRITS"),
)
UNCLASSIFIED = "UNCLASSIFIED"

REFERENCE_DATA = TableSpec(
    name="gold.ttb_reference_data",
    comment=(
        "TTB code lists: class/type codes (with product type and family), origin codes, receipt methods, "
        "statuses, product types, US states. MERGEd from the seed snapshot or the registry's lookup "
        "pages; never wiped; a better source is never overwritten by a worse one."
    ),
    keys=("ref_type", "code"),
    schema=StructType([
        column("ref_type", StringType(), "class_type | origin | receipt_method | status | product_type | us_state", False),
        column("code", StringType(), "the code as TTB writes it (a string: '81', '80A', '5K', '001')", False),
        column("description", StringType(), "TTB's description of the code, upper case"),
        column("product_type", StringType(), "class_type only: WINE / DISTILLED SPIRITS / MALT BEVERAGE (null: administrative, mixes)"),
        column("family", StringType(), "class_type only: family in the category hierarchy (WHISKY, VODKA, TABLE WINE, ALE ...)"),
        column("is_domestic", BooleanType(), "origin: a US place (state, DC, territory or AMERICAN); us_state: true"),
        column("state_code", StringType(), "origin of a US state/territory, and us_state: USPS abbreviation"),
        column("source", StringType(), "registry | observed (saved pages) | seed_list | seed_range (expanded range of the transcribed list)"),
        column("row_hash", StringType(), "SHA-256 of the non-key columns (MERGE updates only changed rows)"),
    ]),
)


@dataclass(frozen=True)
class RefRow:
    """One reference row before it becomes a DataFrame row."""

    ref_type: str
    code: str
    description: str | None
    source: str
    product_type: str | None = None
    family: str | None = None
    is_domestic: bool | None = None
    state_code: str | None = None


def classify_class_type(code: str, description: str | None) -> tuple[str | None, str]:
    """(product type, family) of a class/type code by :data:`HIERARCHY_RULES`."""
    for code_re, desc_re, product_type, family in HIERARCHY_RULES:
        if re.search(code_re, code) and (desc_re is None or re.search(desc_re, description or "")):
            return product_type, family
    return None, UNCLASSIFIED


def class_type_hierarchy_columns(code: Column, description: Column) -> tuple[Column, Column]:
    """The same rules as :func:`classify_class_type`, as Spark columns (product_type, family)."""
    from pyspark.sql import functions as F

    product_type: Any = F
    family: Any = F
    for code_re, desc_re, ptype, fam in HIERARCHY_RULES:
        cond = code.rlike(code_re)
        if desc_re is not None:
            cond = cond & F.coalesce(description, F.lit("")).rlike(desc_re)
        product_type = product_type.when(cond, F.lit(ptype))
        family = family.when(cond, F.lit(fam))
    return product_type.otherwise(F.lit(None).cast("string")), family.otherwise(F.lit(UNCLASSIFIED))


def _us_state(name: str) -> str | None:
    import us

    state = us.states.lookup(re.sub(r",\s*US$", "", name).title())
    return state.abbr if state is not None else None


def origin_row(code: str, description: str | None, source: str) -> RefRow:
    """An origin code with its domestic flag and, for US states/territories, the USPS code."""
    domestic = (code.isdigit() and int(code) <= 49) or code in DOMESTIC_ORIGIN_CODES
    state = _us_state(description) if domestic and description else None
    return RefRow("origin", code, description, source, is_domestic=domestic, state_code=state)


def class_type_row(code: str, description: str | None, source: str) -> RefRow:
    """A class/type code with its place in the hierarchy (a range's shared text is not used to classify)."""
    product_type, family = classify_class_type(code, None if source == "seed_range" else description)
    return RefRow("class_type", code, description, source, product_type=product_type, family=family)


_LINE = re.compile(r"^(?P<code>[0-9A-Z]{1,3}(?:[-/][0-9A-Z]{1,3})*)\s{2,}(?P<desc>\S.*)$")


def _expand(code: str) -> tuple[list[str], bool]:
    """Codes of a transcribed list entry: ``181-189`` (a range), ``0/00/000`` (alternatives), ``81``."""
    if "/" in code:
        return code.split("/"), False
    if "-" in code:
        lo, hi = code.split("-")
        return [str(n) for n in range(int(lo), int(hi) + 1)], True
    return [code], False


def parse_code_list(text: str) -> list[tuple[str, str, bool]]:
    """(code, description, from_range) from a transcribed list (``code  description`` lines)."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        codes, ranged = _expand(m["code"])
        out.extend((c, m["desc"].strip().upper(), ranged) for c in codes)
    return out


def _seed_text(name: str) -> str:
    return resources.files("ttb_spark").joinpath(f"{SEED_DIR}/{name}").read_text(encoding="utf-8")


def seed_rows() -> list[RefRow]:
    """The seed snapshot: transcribed lists, codes paired with descriptions on the saved pages,
    receipt methods, statuses, product types, US states; the best source wins per (type, code)."""
    import us

    rows: list[RefRow] = []
    for code, desc, ranged in parse_code_list(_seed_text("class-type-codes-partial.txt")):
        rows.append(class_type_row(code, desc, "seed_range" if ranged else "seed_list"))
    for code, desc, _ in parse_code_list(_seed_text("origin-codes.txt")):
        rows.append(origin_row(code, desc, "seed_list"))
    for rec in csv.DictReader(io.StringIO(_seed_text("observed-codes.csv"))):
        rows.append(class_type_row(rec["class_type_code"], rec["class_type_description"], "observed"))
        rows.append(origin_row(rec["origin_code"], rec["origin_description"], "observed"))
    rows += [RefRow("receipt_method", c, d, "seed_list") for c, d in RECEIPT_METHODS.items()]
    rows += [RefRow("status", c, d.upper(), "seed_list") for c, d in STATUSES.items()]
    rows += [RefRow("product_type", c, d.upper(), "seed_list") for c, d in PRODUCT_TYPES.items()]
    rows += [
        RefRow("us_state", s.abbr, s.name.upper(), "seed_list", is_domestic=True, state_code=s.abbr)
        for s in us.states.STATES_AND_TERRITORIES
    ]
    return best_per_key(rows)


def best_per_key(rows: Iterable[RefRow]) -> list[RefRow]:
    """One row per (ref_type, code): the highest-ranked source; later rows win ties."""
    best: dict[tuple[str, str], RefRow] = {}
    for row in rows:
        key = (row.ref_type, row.code)
        if key not in best or SOURCE_RANK[row.source] >= SOURCE_RANK[best[key].source]:
            best[key] = row
    return sorted(best.values(), key=lambda r: (r.ref_type, r.code))


def parse_lookup_page(html: bytes | str, ref_type: str) -> list[RefRow]:
    """Rows of a registry lookup page (an HTML table of code / description)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    rows: list[RefRow] = []
    make = class_type_row if ref_type == "class_type" else origin_row
    for tr in soup.find_all("tr"):
        cells = [" ".join(td.get_text(" ", strip=True).split()) for td in tr.find_all("td")]
        if len(cells) >= 2 and re.fullmatch(r"[0-9A-Z]{1,4}", cells[0]) and cells[1]:
            rows.append(make(cells[0], cells[1].upper(), "registry"))
    return rows


def fetch_lookup_rows(settings: Settings) -> list[RefRow]:
    """Class/type and origin rows from the registry's lookup pages; [] when it cannot be reached
    or answers something that is not the list (error page, session timeout, too few rows)."""
    import requests

    from ttb_spark.registry.client import ca_bundle

    ext = settings.extraction
    rows: list[RefRow] = []
    with requests.Session() as session:
        session.headers["User-Agent"] = ext.user_agent
        session.verify = ca_bundle(ext.extra_ca_bundle)
        for path, ref_type in ((CLASS_TYPE_LOOKUP, "class_type"), (ORIGIN_LOOKUP, "origin")):
            try:
                response = session.get(ext.registry_base_url + path, timeout=ext.request_timeout_seconds)
            except requests.RequestException:
                return []
            page_rows = parse_lookup_page(response.content, ref_type) if response.status_code == 200 else []
            if len(page_rows) < MIN_LOOKUP_ROWS:
                return []
            rows += page_rows
    return rows


def to_frame(spark: SparkSession, rows: Iterable[RefRow]) -> DataFrame:
    """Reference rows as a DataFrame of the table's schema (row_hash computed on write)."""
    spec = REFERENCE_DATA
    data = [
        (r.ref_type, r.code, r.description, r.product_type, r.family, r.is_domestic, r.state_code, r.source, None)
        for r in rows
    ]
    return spark.createDataFrame(data, spec.schema)


def updates(incoming: DataFrame, existing: DataFrame) -> DataFrame:
    """Incoming rows that may be written: new keys, or a source at least as good as the stored one."""
    from pyspark.sql import functions as F

    rank = F.create_map(*[x for k, v in SOURCE_RANK.items() for x in (F.lit(k), F.lit(v))])
    old = existing.select("ref_type", "code", F.col("source").alias("old_source"))
    joined = incoming.join(old, ["ref_type", "code"], "left")
    keep = F.col("old_source").isNull() | (rank[F.col("source")] >= rank[F.col("old_source")])
    return joined.where(keep).drop("old_source")


def merge(spark: SparkSession, settings: Settings, rows: Iterable[RefRow]) -> dict[str, int]:
    """MERGE reference rows (never deleting, never downgrading a row's source)."""
    spec = REFERENCE_DATA
    root = settings.pipeline.lakehouse_root
    existing = lakehouse.read_table(spark, spec, root)
    return lakehouse.merge_upsert(spark, updates(to_frame(spark, rows), existing), spec, root)


def ensure_seeded(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """Fill the reference table from the seed when it does not exist yet or is empty (the gold stage's
    first run, or a first run killed between creating the table and merging the seed)."""
    spec = REFERENCE_DATA
    if not lakehouse.read_table(spark, spec, settings.pipeline.lakehouse_root).isEmpty():
        return {"inserted": 0, "updated": 0, "deleted": 0}
    return merge(spark, settings, seed_rows())


def read(spark: SparkSession, settings: Settings) -> DataFrame:
    return lakehouse.read_table(spark, REFERENCE_DATA, settings.pipeline.lakehouse_root)


def run(spark: SparkSession, settings: Settings, scope: Whole) -> dict[str, int]:
    """The ``reference`` stage: seed snapshot, then the registry's lookup pages when reachable."""
    registry_rows = fetch_lookup_rows(settings)
    counts = merge(spark, settings, best_per_key([*seed_rows(), *registry_rows]))
    return {
        "registry_rows": len(registry_rows),
        "from_registry": int(bool(registry_rows)),
        "inserted": counts["inserted"],
        "updated": counts["updated"],
    }
