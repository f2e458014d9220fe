"""Watchlist rules: a TOML file (``TTB_WATCHLIST_FILE``) of ``[[watch]]`` tables, each a named rule.

A rule matches a change that gold recorded when every criterion it gives matches (one of its values,
for a list); a rule giving none matches every change of its kinds::

    [[watch]]
    name = "new Kentucky whiskey brands"
    families = ["WHISKY"]
    states = ["KY"]
    changes = ["new"]

Criteria: ``permits`` (permit numbers), ``companies`` and ``brands`` (name patterns, ``*`` any text,
``?`` one character, case-insensitive), ``class_types`` (class/type codes), ``families``
(gold.dim_product_types.family), ``origins`` (origin codes or descriptions), ``states`` (the permit
holder's state, USPS code); ``changes``: which kinds (default every kind).
"""

from __future__ import annotations

import tomllib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ttb_spark.settings import SettingsError

KINDS = ("new", "status_changed", "withdrawn", "removed", "reinstated")
Kind = Literal["new", "status_changed", "withdrawn", "removed", "reinstated"]


class Rule(BaseModel):
    """One watchlist rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=200)
    permits: tuple[str, ...] = ()
    companies: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    class_types: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    changes: tuple[Kind, ...] = KINDS

    @field_validator("permits", "companies", "brands", "class_types", "families", "origins", "states", "changes")
    @classmethod
    def _values(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if any(not v.strip() for v in values):
            raise ValueError("an empty value matches nothing: remove it")
        return tuple(v.strip() for v in values)


class Watchlist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    watch: tuple[Rule, ...] = Field(min_length=1)

    @field_validator("watch")
    @classmethod
    def _unique(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        names = [r.name for r in rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"rule names must be unique: {', '.join(map(repr, twice))} given twice")
        return rules


def parse(text: str, source: str) -> tuple[Rule, ...]:
    """The rules of a watchlist file's ``text``; :class:`SettingsError` naming ``source`` and the bad entry."""
    try:
        return Watchlist.model_validate(tomllib.loads(text)).watch
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"invalid watchlist {source}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"invalid watchlist {source}: {where}: {first['msg'].removeprefix('Value error, ')}") from None


def load(path: str, region: str, endpoint_url: str | None = None) -> tuple[Rule, ...]:
    """The rules of the watchlist at ``path`` (a file path, a Databricks workspace file or volume path, or
    an ``s3://`` object URI)."""
    from ttb_spark.raw import storage

    parent, _, key = path.rpartition("/")
    try:
        text = storage.open_store(parent or ".", region, endpoint_url).get(key).decode()
    except Exception as exc:
        raise SettingsError(f"invalid setting TTB_WATCHLIST_FILE: cannot read {path} ({type(exc).__name__}: {exc})") from None
    return parse(text, path)
