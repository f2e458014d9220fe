"""Listing a completed-date window through the registry's search, whole: a search returns at most a capped
number of rows (500-1,000) while its "Total Matching Records" gives the true total, so a window over the
cap is searched in narrower parts (:func:`list_completed`) until the distinct IDs listed add up to it.

Why the parts are checked rather than trusted: how the search compares class/type codes in a range (as
strings, or as zero-padded numbers: is ``80`` inside ``000``-``399``?) is not documented, and the registry
files records under codes no list of ours holds (its lookup lists ~530, the seed ~400), so a split by code
ranges can miss records without any error. A window without a class/type range can have no part that
lists a record outside it, so a count that adds up proves the listing whole.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Iterable

from ttb_spark.registry import search

if TYPE_CHECKING:
    from ttb_spark.registry.client import SearchAnswer


class WindowTooLarge(RuntimeError):
    """A search window over the registry's cap whose records no way of splitting it accounts for (names the
    window and what was tried)."""


@lru_cache(maxsize=1)
def known_codes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(class/type codes, origin codes) of the reference seed, sorted as strings."""
    from ttb_spark import reference

    rows = reference.seed_rows()
    return (tuple(sorted({r.code for r in rows if r.ref_type == "class_type"})),
            tuple(sorted({r.code for r in rows if r.ref_type == "origin"})))


def code_key(code: str, order: str = "string") -> tuple[int, str]:
    """A class/type code as a search may compare it: as a string, or ``numeric`` (as a zero-padded number: its
    leading digits as a number, then the rest, so ``80`` < ``80A`` < ``100``). The registry does not say which."""
    if order == "string":
        return (0, code)
    digits = re.match(r"\d*", code).group()
    return (int(digits) if digits else -1, code[len(digits):])


CODE_ORDERS = ("string", "numeric")


def split(criteria: search.Criteria, codes: Iterable[str], order: str = "string", busy: Iterable[str] = ()) -> list[search.Criteria]:
    """Two halves of a window: by completed date, else by class/type range over ``codes`` (the known codes inside
    its range, compared in ``order``); empty when neither splits it (one day, fewer than two known codes inside).

    The halves meet at a known code near the middle that no answer listed yet (not in ``busy``): both include
    it, so a code no list of ours holds that lies next to it is in one of them, at the price of nothing listed
    twice. Without such a code they meet between two codes, and a code of ours neither holds can fall between
    (the day's count then tells, and the next way is tried)."""
    c = criteria
    if c.date_from < c.date_to:
        middle = c.date_from + timedelta(days=(c.date_to - c.date_from).days // 2)
        return [replace(c, date_to=middle), replace(c, date_from=middle + timedelta(days=1))]

    def key(code: str) -> tuple[int, str]:
        return code_key(code, order)

    within = [k for k in set(codes) if (not c.class_type_from or key(k) >= key(c.class_type_from))
              and (not c.class_type_to or key(k) <= key(c.class_type_to))]
    inside = sorted({key(k): k for k in sorted(within)}.values(), key=key)  # one code per place in the order ("0" = "000" as numbers)
    if len(inside) < 2:
        return []
    half, seen = len(inside) // 2, set(busy)
    quiet = sorted((i for i in range(1, len(inside) - 1) if inside[i] not in seen), key=lambda i: abs(i - half))
    if quiet:  # strictly inside, so each half holds fewer known codes than the window
        return [replace(c, class_type_to=inside[quiet[0]]), replace(c, class_type_from=inside[quiet[0]])]
    return [replace(c, class_type_to=inside[half - 1]), replace(c, class_type_from=inside[half])]


# the first characters of brand names, for the narrowest split (a brand starting with anything else is
# missed by it, and the window it belongs to then fails: its parts do not add up)
BRAND_START = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + tuple(" '\"&.-#(")
BRAND_PREFIX_MAX = 3  # brand-name prefixes are searched up to this many characters


def list_completed(run_search: Callable[[search.Criteria], SearchAnswer], criteria: search.Criteria,
                   codes: tuple[Iterable[str], Iterable[str]] | None = None) -> tuple[list[search.Listing], list[tuple[SearchAnswer, bool]]]:
    """Every row completed in the window, by TTB ID, and each answer (final: under the cap, not split).

    A window over the registry's cap is searched in narrower parts: date halves; within one day, class/type
    ranges over the known codes (``codes``: the seed's, plus every code an answer of the run listed), compared
    as strings, else as zero-padded numbers (the order that accounted for a day is tried first after it), else
    each class/type code exactly, else each origin, else each brand-name prefix (a part over the cap is
    narrowed further: class/type halves, then origins, then longer prefixes). How the registry orders codes
    is not documented and it has codes no list of ours holds, so a way is trusted only when the distinct IDs
    its parts list add up to the day's total (a window without a class/type range has no part that can list
    a record outside it); when they do not, the next way is tried. A window that grew while it was listed
    (today's) is asked again. Only a window that no way accounts for fails, naming it and what was tried."""
    class_codes, origins = codes or known_codes()
    answers: list[tuple[SearchAnswer, bool]] = []
    seen_codes: dict[str, None] = {}  # the codes and origins answers listed, in the order first seen
    seen_origins: dict[str, None] = {}
    orders = list(CODE_ORDERS)  # how the registry compares codes in a range: unknown, so each in turn

    asked: dict[search.Criteria, SearchAnswer] = {}

    def ask(c: search.Criteria, again: bool = False) -> SearchAnswer:
        """The registry's answer to ``c``: asked once per run (two ways can reach the same search), ``again`` anew."""
        if c in asked and not again:
            return asked[c]
        answer = asked[c] = run_search(c)
        answers.append((answer, answer.complete))
        seen_codes.update((r.class_type_code, None) for r in answer.rows if r.class_type_code)
        seen_origins.update((r.origin_code, None) for r in answer.rows if r.origin_code)
        return answer

    def too_large(c: search.Criteria, answer: SearchAnswer, why: str) -> WindowTooLarge:
        return WindowTooLarge(f"search window {c.label}: {answer.total} records, more than the {answer.returned} a search returns, {why}")

    def union(parts: Iterable[Callable[[], dict[str, search.Listing]]], total: int) -> dict[str, search.Listing]:
        rows: dict[str, search.Listing] = {}
        for part in parts:
            if len(rows) >= total:
                break  # the window is accounted for: the remaining parts can add nothing
            rows |= part()
        return rows

    def rows_of(c: search.Criteria, order: str = "string") -> dict[str, search.Listing]:
        """The rows of a part (unchecked: the day's window checks the union), narrowed while over the cap
        (class/type ranges compared in ``order``)."""
        answer = ask(c)
        if answer.complete:
            return {r.ttb_id: r for r in answer.rows}
        halves = [] if c.brand_prefix else code_halves(c, order)  # a brand prefix only gets longer
        if halves:
            return union([lambda h=h: rows_of(h, order) for h in halves], answer.total)
        if not c.origin_code and not c.brand_prefix:
            return union((lambda o=o: rows_of(replace(c, origin_code=o)) for o in seen_first(seen_origins, origins)), answer.total)
        if len(c.brand_prefix) < BRAND_PREFIX_MAX:
            return union((lambda p=p: rows_of(replace(c, brand_prefix=c.brand_prefix + p)) for p in BRAND_START), answer.total)
        raise too_large(c, answer, f"and it cannot be split further (one completed date, class/type code and origin, "
                                   f"a brand-name prefix of {BRAND_PREFIX_MAX} characters)")

    def code_halves(c: search.Criteria, order: str) -> list[search.Criteria]:
        return split(c, [*class_codes, *seen_codes], order, seen_codes)

    Way = tuple[str, str | None, Iterable[Callable[[], dict[str, search.Listing]]]]  # label, code order, parts

    def ways(c: search.Criteria) -> Iterable[Way]:
        if c.date_from < c.date_to:
            yield "date halves", None, [lambda h=h: window(h) for h in split(c, ())]
            return
        for order in list(orders):
            yield f"class/type ranges ({order} order)", order, [lambda h=h, o=order: rows_of(h, o) for h in code_halves(c, order)]
        yield "each class/type code", None, (lambda k=k: rows_of(replace(c, class_type_from=k, class_type_to=k))
                                             for k in seen_first(seen_codes, class_codes))
        if not c.origin_code:
            yield "each origin", None, (lambda o=o: window(replace(c, origin_code=o)) for o in seen_first(seen_origins, origins))
        yield "each brand-name prefix", None, (lambda p=p: rows_of(replace(c, brand_prefix=p)) for p in BRAND_START)

    def window(c: search.Criteria) -> dict[str, search.Listing]:
        """Every row of ``c`` (no class/type range, no brand prefix), its parts checked against its total."""
        answer = ask(c)
        if answer.complete:
            return {r.ttb_id: r for r in answer.rows}
        tried = []
        for way, order, parts in ways(c):
            try:
                rows = union(parts, answer.total)
            except WindowTooLarge as exc:
                tried.append(f"{way}: {exc}")
                continue
            if len(rows) == answer.total or (len(rows) > answer.total and len(rows) == ask(c, again=True).total):
                if order:  # the order that worked is tried first from now on
                    orders.sort(key=lambda o: o != order)
                return rows
            tried.append(f"{way}: the parts list {len(rows)}")
        raise too_large(c, answer, f"and no way of splitting it accounts for them ({'; '.join(tried)})")

    rows = window(criteria)
    return [rows[k] for k in sorted(rows)], answers


def seen_first(seen: Iterable[str], known: Iterable[str]) -> list[str]:
    """``seen`` (codes or origins answers listed, most likely to hold records), then the rest of ``known``."""
    first = dict.fromkeys(seen)
    return [*first, *(k for k in known if k not in first)]


def windows(first: date, last: date, days: int) -> list[search.Criteria]:
    """Completed-date windows of at most ``days`` days covering ``first..last``."""
    out = []
    while first <= last:
        end = min(last, first + timedelta(days=days - 1))
        out.append(search.Criteria(first, end))
        first = end + timedelta(days=1)
    return out
