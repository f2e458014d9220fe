"""The simulator's population model: which TTB IDs are ever public, each record's values and timeline,
and the ``registry`` profile's population (permits, companies, brands, class/types and origins).

The clock: with a simulated ``today`` (``RegistrySimulator(today=...)``, ``simulate-registry
--today``) every record has a timeline drawn from its ID: its completed (approval) date, mostly
days to weeks after receipt with a tail past 90 days; for a few per hundred a later status change
(SURRENDERED, REVOKED, EXPIRED) whose date becomes the record's completed date; for about one in a
hundred a withdrawal from public view (the error page from that day on). A record is public from
its approval to its withdrawal and its pages show its status as of today; :meth:`SyntheticRegistry.state`
and ``--list-public DAY --today T`` give the truth as of any day. Without a ``today`` every record is
public, as approved (the walk-based tests and benchmarks rely on that). In the ``registry`` profile
approvals fall on weekdays only, each weekday taking its drawn workload's share: at scale 1.0 a weekday
completes ~600-1,350 COLAs, so a busy one exceeds the 1,000-row search cap, as a real one does.
"""

from __future__ import annotations

import bisect
import hashlib
import html
import random
import re
import threading
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, Iterable

from ttb_spark.registry import search
from ttb_spark.registry.listing import code_key
from ttb_spark.registry.simulator.pages import _templates
from ttb_spark.registry.ttb_id import TTBId, is_valid_ttb_id

LONG_GAP = (60, 150)  # non-public runs longer than the default threshold of 50 consecutive misses
_BRAND_WORDS = (
    ("OLD", "NORTH", "SILVER", "RED", "GOLDEN", "WILD", "STONE", "BLUE", "IRON", "COPPER", "HIGH", "LITTLE"),
    ("OAK", "RIVER", "RIDGE", "HARBOR", "MEADOW", "CANYON", "BARREL", "ORCHARD", "HOLLOW", "SUMMIT", "CREEK", "FIELD"),
)
STATUS_CHANGES = ("SURRENDERED", "REVOKED", "EXPIRED")
APPROVAL_LAG = ((0.80, 1, 21), (0.95, 22, 89), (1.0, 90, 180))  # (cumulative share, min days, max days)
CHANGE_SHARE, CHANGE_LAG = 0.04, (14, 365)  # status changes: share of records, days after approval
WITHDRAW_SHARE, WITHDRAW_LAG = 0.01, (7, 180)  # withdrawals from public view
# class/type codes the real search files records under that the reference seed lacks: between two seed codes
# as strings ("80B", "815"), before every one ("0A") and after every one ("9K")
UNLISTED_CODES = ("80B", "815", "0A", "9K")
# registry profile: a weekday's workload (approvals it takes, relative to the mean), none at weekends; at scale 1.0 a
# weekday completes ~600-1,350 COLAs, so a busy one exceeds the 1,000-row search cap
WORKLOAD, WORKDAY_DRAWS = (0.6, 1.4), 64
MAX_LAG = APPROVAL_LAG[-1][2] + 2 + CHANGE_LAG[1]  # receipt -> last possible completed date (+2: a weekend moved to Monday)
PROFILES = ("templates", "registry")
EFILED = {"templates": ((250, 450), (20, 60)), "registry": ((600, 1300), (10, 60))}  # e-filed a day at scale 1: (weekday, weekend)
PERMITS_PER_TEMPLATE = 400  # registry profile: 18 templates x 400 = 7,200 permits, filings Zipf-distributed over them
PERMIT_ZIPF, BRAND_ZIPF = 1.1, 1.0  # exponents: a few very large filers, a long tail of small ones; brands per permit likewise
BRANDS_PER_PERMIT = 120
MAIN_CLASS_SHARE = 0.6  # registry profile: share of a permit's filings under its main class/type (the rest: any of its product type)
_NAME_WORDS = (
    ("OLD", "NORTH", "SILVER", "RED", "GOLDEN", "WILD", "STONE", "BLUE", "IRON", "COPPER", "HIGH", "LITTLE", "GREAT", "BLACK",
     "WHITE", "GREEN", "EAGLE", "FOX", "BEAR", "CEDAR", "PINE", "LAUREL", "CROWN", "STAR", "MOON", "SUN", "THREE", "TWIN",
     "LONE", "BIG", "SMOKY", "SALT", "SAINT", "CASTLE", "KING", "QUEEN", "FOUR", "HIDDEN", "BRIGHT", "DARK"),
    ("OAK", "RIVER", "RIDGE", "HARBOR", "MEADOW", "CANYON", "BARREL", "ORCHARD", "HOLLOW", "SUMMIT", "CREEK", "FIELD", "VALLEY",
     "HILL", "MILL", "STILL", "CELLAR", "VINE", "GROVE", "SPRING", "LAKE", "BAY", "ROCK", "TRAIL", "GATE", "BRIDGE", "FORGE",
     "FARM", "ESTATE", "HOUSE", "POINT", "PEAK", "FALLS", "GLEN", "MESA", "BLUFF", "COVE", "ISLAND", "PRAIRIE", "WOODS"),
    ("", "", "", "RESERVE", "SELECT", "NO. 7", "SMALL BATCH", "CLASSIC", "ORIGINAL", "SPECIAL", "PRIVATE", "HERITAGE",
     "FAMILY", "CUVEE", "SINGLE BARREL", "VINTAGE", "GOLD", "BLACK LABEL", "IPA", "LAGER"),
)
_COMPANY_KINDS = {"WINE": "WINERY LLC", "DISTILLED SPIRITS": "DISTILLING CO.", "MALT BEVERAGE": "BREWING COMPANY"}


# --- the synthetic record set -------------------------------------------------------------------


def _approval_lag(rng: random.Random) -> int:
    """Days from receipt to approval: mostly within three weeks, a tail past 90 days (:data:`APPROVAL_LAG`)."""
    share = rng.random()
    low, high = next((lo, hi) for cut, lo, hi in APPROVAL_LAG if share < cut)
    return rng.randint(low, high)


@lru_cache(maxsize=4096)
def workload(seed: int, day: date) -> float:
    """The registry profile's workload of ``day``: drawn per day in :data:`WORKLOAD` for weekdays, 0 at weekends."""
    return 0.0 if day.weekday() >= 5 else random.Random(f"{seed}|workload|{day.isoformat()}").uniform(*WORKLOAD)


@dataclass(frozen=True)
class Record:
    ttb_id: str
    serial: str
    brand: str
    receipt_date: date
    approval_date: date
    template: int
    change_status: str | None = None  # a later status (SURRENDERED, REVOKED, EXPIRED) ...
    change_date: date | None = None  # ... from this day on
    withdrawn_date: date | None = None  # answers the error page from this day on
    varied: tuple[tuple[str, str], ...] = ()  # registry profile: values in place of the template's (permit, names, codes)

    def value(self, name: str, default: str | None) -> str | None:
        """The record's own value of a varied field (``permit``, ``class_type_code`` ...), else ``default``."""
        return dict(self.varied).get(name, default)


@dataclass(frozen=True)
class State:
    """A record as of one day: public or not, its status and its completed date."""

    public: bool
    status: str | None
    completed_date: date | None


class SyntheticRegistry:
    """The deterministic set of records: which sequence numbers are ever public, their timelines and pages."""

    def __init__(self, seed: int = 0, scale: float = 1.0, profile: str = "templates", unlisted_codes: float = 0.0) -> None:
        """``unlisted_codes``: the share of records the search lists under one of :data:`UNLISTED_CODES` (their
        pages are unchanged: only the search's index files them so)."""
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
        self.seed, self.scale, self.profile, self.unlisted_codes = seed, scale, profile, unlisted_codes
        self._lock = threading.Lock()
        self._indexed: set[date] = set()
        self._completions: dict[date, list[str]] = {}  # completed date (approval or change) -> IDs

    @lru_cache(maxsize=4096)
    def public_sequences(self, day: date, receipt_method: str) -> tuple[int, ...]:
        """Sequence numbers of one receipt day and method that are ever approved, ascending."""
        rng = random.Random(f"{self.seed}|{day.isoformat()}|{receipt_method}")
        if receipt_method == "001":
            weekday, weekend = EFILED[self.profile]
            base = rng.randint(*weekend) if day.weekday() >= 5 else rng.randint(*weekday)
            count = max(1, round(base * self.scale))
        else:
            count = rng.choice((0, 0, 0, 1, 1, 2, 3))
        long_gaps = receipt_method == "001" and count >= 10
        sequences, seq = [], 0
        for index in range(count):
            if long_gaps and (index == count // 2 or rng.random() < 1 / 150):
                gap = rng.randint(*LONG_GAP)
            elif rng.random() < 0.25:
                gap = rng.randint(1, 8)
            else:
                gap = 0
            seq += gap + 1
            sequences.append(seq)
        return tuple(sequences)

    def public_ids(self, day: date, receipt_method: str, as_of: date | None = None) -> list[str]:
        """IDs of a receipt day and method public as of ``as_of`` (every ever-approved one when None)."""
        ids = [str(TTBId.build(day, receipt_method, s)) for s in self.public_sequences(day, receipt_method)]
        return ids if as_of is None else [i for i in ids if self.state(i, as_of).public]

    @lru_cache(maxsize=200_000)
    def record(self, ttb_id: str) -> Record | None:
        """The record with this ID, or None when the ID is never public."""
        if not is_valid_ttb_id(ttb_id):
            return None
        tid = TTBId(ttb_id)
        if tid.sequence not in set(self.public_sequences(tid.receipt_date, tid.receipt_method)):
            return None
        rng = random.Random(f"{self.seed}|record|{ttb_id}")
        alphabet = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
        serial = f"{tid.receipt_date.year % 100:02d}" + "".join(rng.choice(alphabet) for _ in range(4))
        brand = f"{rng.choice(_BRAND_WORDS[0])} {rng.choice(_BRAND_WORDS[1])}"
        rng.randint(0, 45)  # the draw of the former flat approval lag, kept so templates stay as they were
        template = rng.randrange(len(_templates()))
        clock = random.Random(f"{self.seed}|clock|{ttb_id}")
        if clock.random() < 0.05:
            brand += ", LTD."  # a comma inside a value: the CSV export does not quote it
        approval = tid.receipt_date + timedelta(days=_approval_lag(clock))
        if self.profile == "registry":
            approval = self._working_day(ttb_id, tid.receipt_date, approval)
        change_status = change_date = withdrawn = None
        if clock.random() < CHANGE_SHARE:
            change_status = clock.choice(STATUS_CHANGES)
            change_date = approval + timedelta(days=clock.randint(*CHANGE_LAG))
        if clock.random() < WITHDRAW_SHARE:
            withdrawn = approval + timedelta(days=clock.randint(*WITHDRAW_LAG))
        varied: dict[str, str] = {}
        if self.profile == "registry":
            varied = _population_draw(random.Random(f"{self.seed}|population|{ttb_id}"), template)
            brand = varied.pop("brand") + (", LTD." if brand.endswith(", LTD.") else "")
        return Record(ttb_id, serial, brand, tid.receipt_date, approval, template, change_status, change_date, withdrawn,
                      tuple(sorted(varied.items())))

    def _working_day(self, ttb_id: str, received: date, approval: date) -> date:
        """Registry profile: the approval date redrawn until a day's workload takes it (:func:`workload`), so
        approvals fall on weekdays only and some weekdays complete far more than others, as the registry's do."""
        draws = random.Random(f"{self.seed}|workday|{ttb_id}")
        for _ in range(WORKDAY_DRAWS):
            if draws.random() * WORKLOAD[1] < workload(self.seed, approval):
                return approval
            approval = received + timedelta(days=_approval_lag(draws))
        while approval.weekday() >= 5:  # all WORKDAY_DRAWS draws refused (about 0.5**64): the next Monday
            approval += timedelta(days=1)
        return approval

    def state(self, ttb_id: str, as_of: date | None) -> State:
        """The record as of ``as_of``; None means no clock: public as approved, status of its template."""
        rec = self.record(ttb_id)
        if rec is None:
            return State(False, None, None)
        if as_of is None:
            return State(True, _templates()[rec.template].status, rec.approval_date)
        public = rec.approval_date <= as_of and not (rec.withdrawn_date and rec.withdrawn_date <= as_of)
        if rec.change_date and rec.change_date <= as_of:
            return State(public, rec.change_status, rec.change_date)
        return State(public, "APPROVED", rec.approval_date) if rec.approval_date <= as_of else State(False, None, None)

    def _index(self, first: date, last: date) -> None:
        """Index the completions of every record received from ``first`` to ``last``."""
        with self._lock:
            day = first
            while day <= last:
                if day not in self._indexed:
                    for method in ("000", "001", "002", "003"):
                        for ttb_id in self.public_ids(day, method):
                            rec = self.record(ttb_id)
                            for when in (rec.approval_date, rec.change_date):
                                if when:
                                    self._completions.setdefault(when, []).append(ttb_id)
                    self._indexed.add(day)
                day += timedelta(days=1)

    def completed_between(self, first: date, last: date, as_of: date | None) -> list[search.Listing]:
        """Public records whose completed date (as of ``as_of``) falls in ``first..last``, by TTB ID."""
        last = min(last, as_of) if as_of else last
        if first > last:
            return []
        self._index(first - timedelta(days=MAX_LAG), last)
        rows = {}
        day = first
        while day <= last:
            for ttb_id in self._completions.get(day, ()):
                state = self.state(ttb_id, as_of)
                if state.public and state.completed_date == day:
                    rows[ttb_id] = self.listing(ttb_id, day)
            day += timedelta(days=1)
        return [rows[k] for k in sorted(rows)]

    def observable_history(self, ids: Iterable[str], since: date, run_days: list[date]) -> set[tuple[str, str, str | None, str | None]]:
        """(ttb_id, change_type, previous_status, status) a mirror updated on ``run_days`` (listing completions
        from ``since``) can observe: each record's status on the first run day after an event (approval or
        change on or after ``since``) while public, a change when it differs from the last seen; and
        ``withdrawn`` on the first run day after its withdrawal, once seen."""
        rows = set()
        for ttb_id in ids:
            seen: list[str] = []
            for run in run_days:
                state = self.state(ttb_id, run)
                if state.public and state.completed_date >= since and (not seen or seen[-1] != state.status):
                    rows.add((ttb_id, "change" if seen else "initial", seen[-1] if seen else None, state.status))
                    seen.append(state.status)
            withdrawn = self.record(ttb_id).withdrawn_date
            if seen and withdrawn and withdrawn <= run_days[-1]:
                rows.add((ttb_id, "withdrawn", seen[-1], None))
        return rows

    def listing(self, ttb_id: str, completed: date) -> search.Listing:
        """The search row of a record."""
        rec = self.record(ttb_id)
        tpl = _templates()[rec.template]
        code = rec.value("class_type_code", tpl.class_type_code)
        draw = random.Random(f"{self.seed}|unlisted|{ttb_id}")
        if self.unlisted_codes and draw.random() < self.unlisted_codes:
            code = draw.choice(UNLISTED_CODES)
        return search.Listing(
            ttb_id, completed, rec.value("permit", tpl.permit_number), rec.serial, tpl.fanciful_name, rec.brand,
            rec.value("origin_code", tpl.origin_code), rec.value("origin_description", tpl.origin_description),
            code, rec.value("class_type_description", tpl.class_type_description),
        )

    def render(self, record: Record, data_type: str, as_of: date | None = None) -> bytes:
        """The detail (``cola-detail``) or certificate page of a record as of ``as_of``, as the registry serves it."""
        tpl = _templates()[record.template]
        text = tpl.detail if data_type == "cola-detail" else tpl.certificate
        page = "detail" if data_type == "cola-detail" else "certificate"
        for key, saved in tpl.saved:
            where, name = key.split(".", 1)
            if where == page:
                value = record.value(name, None)
                text = text.replace(f"\x00{name}\x00", saved if value is None else html.escape(value, quote=False))
        values = {
            "ttb_id": record.ttb_id,
            "serial": record.serial,
            "brand": record.brand,
            "application": record.receipt_date.strftime("%m/%d/%Y"),
            "approval": record.approval_date.strftime("%m/%d/%Y"),
            "status": self.state(record.ttb_id, as_of).status or tpl.status,
        }
        for name, value in values.items():
            text = text.replace(f"\x00{name}\x00", value)
        return text.encode("iso-8859-1")


# --- the registry profile's population: permits, companies, brands, class/types and origins ----


@lru_cache(maxsize=4)
def _cumulative(n: int, exponent: float) -> tuple[float, ...]:
    """Cumulative Zipf weights of ranks 1..n."""
    total, out = 0.0, []
    for rank in range(1, n + 1):
        total += rank ** -exponent
        out.append(total)
    return tuple(out)


def _zipf(rng: random.Random, n: int, exponent: float) -> int:
    """A rank in 1..n drawn with probability proportional to rank ** -exponent."""
    weights = _cumulative(n, exponent)
    return min(bisect.bisect_left(weights, rng.random() * weights[-1]), n - 1) + 1


@lru_cache(maxsize=1)
def _codes() -> tuple[dict[str, tuple[tuple[str, str], ...]], dict[bool, tuple[tuple[str, str], ...]]]:
    """Reference class/type codes by product type and origin codes by domestic flag, as (code, description)."""
    from ttb_spark import reference

    classes: dict[str, list[tuple[str, str]]] = {}
    origins: dict[bool, list[tuple[str, str]]] = {}
    for row in reference.seed_rows():
        if not row.description or not row.description.isascii():
            continue
        if row.ref_type == "class_type" and row.product_type:
            classes.setdefault(row.product_type, []).append((row.code, row.description))
        elif row.ref_type == "origin" and row.is_domestic is not None:
            origins.setdefault(row.is_domestic, []).append((row.code, row.description))
    return {k: tuple(v) for k, v in classes.items()}, {k: tuple(v) for k, v in origins.items()}


def _pick(key: str, options: tuple) -> Any:
    return options[int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % len(options)]


def _population_draw(rng: random.Random, template: int) -> dict[str, str]:
    """A registry-profile record's permit (Zipf over the template's permits), its company, brand (Zipf over
    the permit's brands), class/type (mostly the permit's main one, any of its product type otherwise) and origin."""
    tpl = _templates()[template]
    rank = _zipf(rng, PERMITS_PER_TEMPLATE, PERMIT_ZIPF)
    number = 30_000 + template * 1_000 + rank
    permit = re.sub(r"\d+$", str(number), tpl.permit_number) if re.search(r"\d$", tpl.permit_number) else f"{tpl.permit_number}-{number}"
    out = {"permit": permit}
    out["applicant_name"] = " ".join((_pick(permit + "|a", _NAME_WORDS[0]), _pick(permit + "|b", _NAME_WORDS[1]),
                                      _COMPANY_KINDS.get(tpl.product_type or "", "IMPORTS LLC")))
    j = _zipf(rng, BRANDS_PER_PERMIT, BRAND_ZIPF)
    out["brand"] = " ".join(w for w in (_pick(f"{permit}|{j}|{i}", words) for i, words in enumerate(_NAME_WORDS)) if w)
    classes, origins = _codes()
    kinds = classes.get(tpl.product_type or "")
    if kinds:
        main = _pick(permit + "|class", kinds)
        out["class_type_code"], out["class_type_description"] = main if rng.random() < MAIN_CLASS_SHARE else rng.choice(kinds)
    domestic = tpl.origin_code.isdigit() and int(tpl.origin_code) <= 49
    out["origin_code"], out["origin_description"] = _pick(permit + "|origin", origins[domestic]) if rng.random() < 0.8 else rng.choice(origins[domestic])
    return out


def matches(row: search.Listing, criteria: search.Criteria, order: str = "string") -> bool:
    """Whether a listed row meets the class/type range (codes compared in ``order``, one of
    :data:`ttb_spark.registry.listing.CODE_ORDERS`: the registry does not say which it uses), brand-name prefix (any case)
    and origin of a search."""
    code = code_key(row.class_type_code or "", order)
    if criteria.class_type_from and code < code_key(criteria.class_type_from, order):
        return False
    if criteria.class_type_to and code > code_key(criteria.class_type_to, order):
        return False
    if criteria.brand_prefix and not (row.brand_name or "").upper().startswith(criteria.brand_prefix.upper()):
        return False
    return not criteria.origin_code or row.origin_code == criteria.origin_code
