"""Typed settings: one object, nested sections mirroring the original pipeline's config classes.

Precedence, highest first: explicit overrides (command-line flags) > environment variables >
the environment profile in ``conf/<env>.toml`` > the defaults below. Variable names keep the
original pipeline's (``TTB_PARTITION_START_DATE``, ``TTB_RECEIPT_METHODS``, ``AWS_REGION`` ...).
Nothing here is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from contextvars import ContextVar
from datetime import date, datetime, timezone
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

RECEIPT_METHODS: dict[str, str] = {
    "000": "HAND DELIVERED",
    "001": "E-FILED",
    "002": "MAIL",
    "003": "OVERNIGHT COURIER",
}
# Each data type (the pages a TTB ID has) and the kind its page is to the parser (ttb_spark.registry.parse).
PAGE_KINDS: dict[str, str] = {"cola-detail": "detail", "certificate": "certificate"}
DATA_TYPES: tuple[str, ...] = tuple(PAGE_KINDS)
ENVIRONMENTS: tuple[str, ...] = ("development", "test", "production")

_PROFILE: ContextVar[dict[str, dict[str, Any]]] = ContextVar("ttb_profile", default={})
# A lakehouse root naming a catalog namespace (the same prefix as ttb_spark.lakehouse.CATALOG_SCHEME).
CATALOG_SCHEME = "catalog:"
_URI = re.compile(r"^(s3a?|s3n|gs|abfss?|dbfs|file):/{1,3}[^\s]*$")


class SettingsError(ValueError):
    """Invalid settings or arguments; the message names the setting."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _check_uri(value: str) -> str:
    """An object-store URI as given, or a local path made absolute (Delta rejects relative locations)."""
    if _URI.match(value):
        return value
    if "://" in value or not value.strip():
        raise ValueError(f"must be a URI such as s3://bucket/prefix or a local path, got {value!r}")
    return str(Path(value).expanduser().absolute())


class _Section(BaseSettings):
    """A settings section: reads TTB_* variables over the active profile's table."""

    section_name: ClassVar[str] = ""
    model_config = SettingsConfigDict(env_prefix="TTB_", extra="forbid", populate_by_name=True, frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _ProfileSource(settings_cls)


class _ProfileSource(PydanticBaseSettingsSource):
    """Values of the active environment profile (conf/<env>.toml) for one section."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _by_alias(self.settings_cls, _PROFILE.get().get(self.settings_cls.section_name, {}))


def _by_alias(section: type[BaseSettings], values: dict[str, Any]) -> dict[str, Any]:
    """Key values by the name the environment uses (``AWS_REGION`` for ``aws_region``), so that one
    setting given by two sources is one key and the higher-priority source wins."""
    fields = section.model_fields
    return {(_alias(fields[k]) if k in fields else None) or k: v for k, v in values.items()}


def _alias(field: Any) -> str | None:
    alias = field.validation_alias
    return str(alias.choices[0]) if isinstance(alias, AliasChoices) else None


class PipelineSettings(_Section):
    """What to process and where it lives (the original PipelineConfig)."""

    section_name: ClassVar[str] = "pipeline"
    environment: Literal["development", "test", "production"] = "development"
    partition_start_date: date = date(2024, 1, 2)
    partition_end_date: date | None = None
    receipt_methods: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(RECEIPT_METHODS))
    data_types: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DATA_TYPES))
    s3_bucket: str | None = None
    aws_region: str = Field("us-east-1", validation_alias=AliasChoices("AWS_REGION", "aws_region"))
    s3_endpoint_url: str | None = None
    # Unity Catalog mode: with a catalog, every table is a managed table named
    # <catalog>.<schema_prefix><layer>.<table> and lakehouse_root becomes catalog:<catalog>.<schema_prefix>.
    catalog: str | None = None
    schema_prefix: str = ""
    raw_root: str = "data/raw"
    lakehouse_root: str = "data/lakehouse"
    backfill_chunk_days: int = Field(7, ge=1)  # days per chunk of a range run; daily lists and fetches its range in one pass

    @field_validator("receipt_methods", "data_types", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("receipt_methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in RECEIPT_METHODS]
        if unknown or not value:
            raise ValueError(f"unknown receipt method(s) {unknown or value}; allowed: {','.join(RECEIPT_METHODS)}")
        return value

    @field_validator("data_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in DATA_TYPES]
        if unknown or not value:
            raise ValueError(f"unknown data type(s) {unknown or value}; allowed: {','.join(DATA_TYPES)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _catalog_root(cls, data: Any) -> Any:
        """With a catalog, the tables live in it: the lakehouse root names the namespace instead of a path."""
        if isinstance(data, dict) and data.get("catalog"):
            return data | {"lakehouse_root": f"{CATALOG_SCHEME}{data['catalog']}.{data.get('schema_prefix') or ''}"}
        return data

    @field_validator("catalog")
    @classmethod
    def _catalog(cls, value: str | None) -> str | None:
        if not value:  # unset or empty (a deployment passing TTB_CATALOG="" in every target): path tables
            return None
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(f"must be a catalog name (letters, digits, underscores), got {value!r}")
        return value

    @field_validator("schema_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_]*", value):
            raise ValueError(f"must be letters, digits and underscores (schemas are <prefix>bronze ...), got {value!r}")
        return value

    @field_validator("raw_root")
    @classmethod
    def _uri(cls, value: str) -> str:
        return _check_uri(value)

    @field_validator("lakehouse_root")
    @classmethod
    def _tables(cls, value: str) -> str:
        if value.startswith(CATALOG_SCHEME):
            if not re.fullmatch(re.escape(CATALOG_SCHEME) + r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z0-9_]*", value):
                raise ValueError(f"must be {CATALOG_SCHEME}<catalog>.<schema prefix>, got {value!r}")
            return value
        return _check_uri(value)

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"must be an http(s):// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _range(self) -> PipelineSettings:
        if self.partition_end_date is not None and self.partition_end_date < self.partition_start_date:
            raise ValueError(
                f"TTB_PARTITION_END_DATE: {self.partition_end_date} is before "
                f"TTB_PARTITION_START_DATE {self.partition_start_date}"
            )
        return self

    @property
    def end_date(self) -> date:
        """Last receipt date of the range (the start date when no end is set)."""
        return self.partition_end_date or self.partition_start_date


class ExtractionSettings(_Section):
    """How the registry is scraped (the original ExtractionConfig)."""

    section_name: ClassVar[str] = "extraction"
    registry_base_url: str = "https://www.ttbonline.gov/colasonline/"
    use_simulator: bool = False
    simulator_scale: float = Field(1.0, gt=0)
    simulator_today: date | None = None  # the embedded simulator's clock (None: no clock, every record public)
    discovery_window_days: int = Field(7, ge=1)  # completed-date days per search before any split
    discovery_overlap_days: int = Field(2, ge=0)  # discovery re-lists this many days before its watermark
    discovery_sweep_days: int = Field(180, ge=0)  # ... and this many before its range, only to find IDs no longer listed (withdrawn)
    # a backfill by search of receipt dates S..E lists completed dates S..E + this (never past today) and keeps the IDs
    # received in S..E; approvals later than that, and later status changes, reach the lakehouse by the daily flow
    backfill_lag_days: int = Field(180, ge=0)
    failed_page_retry_days: int = Field(14, ge=0)  # a page discovery could not fetch is fetched again by later runs for this many days
    # each certificate discovery fetches is followed by its label images, in the same registry session (off: none)
    label_images: bool = True
    # a label image not due yet (48 hours after approval), missing or failed is tried again by later runs for this
    # many days after it was due
    image_revisit_days: int = Field(14, ge=0)
    # the images job (label images of COLAs already in the lakehouse) sends at most this many requests a run, retries
    # aside (at TTB_MAX_REQUESTS_PER_SECOND 2, 20,000 is about 3 hours); the next run goes on where it stopped
    image_request_budget: int = Field(20_000, ge=1)
    max_sequence_per_batch: int = Field(2000, ge=1, le=999_999)
    # the share of each receipt day's sequence numbers (those no search listed and no walk found, up to the
    # consecutive-miss threshold past the highest known) that reconcile walks itself: 1.0 every one, 0 none
    reconcile_walk_share: float = Field(0.0, ge=0.0, le=1.0)
    consecutive_failure_threshold: int = Field(50, ge=1)
    request_delay_seconds: float = Field(0.5, ge=0)
    max_requests_per_second: float = Field(2.0, gt=0)
    scrape_concurrency: int = Field(2, ge=1)
    request_timeout_seconds: float = Field(30.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_initial_seconds: float = Field(1.0, ge=0)
    backoff_max_seconds: float = Field(60.0, ge=0)
    extra_ca_bundle: str | None = None
    user_agent: str = "ttb_spark/0.1 (+https://github.com/ttb-spark/ttb_spark; COLA registry research crawler)"

    @field_validator("registry_base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
            raise ValueError(f"must be an http(s):// URL, got {value!r}")
        return value if value.endswith("/") else value + "/"

    def registry_today(self) -> date:
        """The registry's today: the embedded simulator's clock when it has one, else today's UTC date."""
        return self.simulator_today if self.use_simulator and self.simulator_today else datetime.now(timezone.utc).date()


class ProcessingSettings(_Section):
    """Silver: parsing, cleaning and validation (the original ProcessingConfig)."""

    section_name: ClassVar[str] = "processing"
    validate_reference_codes: bool = True
    reconcile_strict: bool = True
    # a change-driven run's pages are processed in batches of receipt dates holding at most this many (their
    # HTML is cached while a batch is parsed: 20,000 pages at ~21 KB are ~420 MB), so a backlog of a year fits
    # a 2g driver (bench.volume_bench: 506,422 pages in 27 batches)
    max_pages_per_batch: int = Field(20_000, ge=1)


class ConsolidationSettings(_Section):
    """Consolidated COLAs (the original ConsolidationConfig)."""

    section_name: ClassVar[str] = "consolidation"
    prefer_certificate_codes: bool = True


class AnalyticsSettings(_Section):
    """Gold dimensions, facts and quality checks (the original AnalyticsConfig)."""

    section_name: ClassVar[str] = "analytics"
    min_valid_date: date = date(1990, 1, 1)
    blocking_quality_checks: bool = True
    # Change-driven runs: days between the run's date and gold's newest approval (or ingest) that warn,
    # and that block publishing (none: freshness never blocks).
    freshness_warn_days: int = Field(4, ge=0)
    freshness_block_days: int | None = Field(None, ge=0)
    # Change-driven runs: the newest approval day's count against the mean of the approval days in the
    # previous drift_baseline_days days; outside [mean / drift_ratio, mean * drift_ratio] it fails.
    drift_baseline_days: int = Field(28, ge=1)
    drift_ratio: float = Field(3.0, gt=1.0)
    drift_blocking: bool = False
    # `ttb_spark report` (charts over gold, one HTML page): the ISO weeks it covers by default, and whether a
    # job ending in gold (daily, pipeline, analytics, gold) writes it after a run whose gold processed COLAs.
    report_weeks: int = Field(8, ge=1, le=520)
    report_after_run: bool = True
    # Watchlists: a TOML file of rules (ttb_spark/watch/rules.py; a path, workspace file, volume path or s3:// URI);
    # the daily job records the changes they match in gold.watch_hits and sends a digest to the Apprise URLs of
    # TTB_WATCH_NOTIFY_URLS (environment only: they carry tokens). None: no watching.
    watchlist_file: str | None = None

    @model_validator(mode="after")
    def _freshness(self) -> AnalyticsSettings:
        if self.freshness_block_days is not None and self.freshness_block_days < self.freshness_warn_days:
            raise ValueError(
                f"TTB_FRESHNESS_BLOCK_DAYS ({self.freshness_block_days}) must be >= TTB_FRESHNESS_WARN_DAYS ({self.freshness_warn_days})"
            )
        return self


class SparkSettings(_Section):
    """Local session tuning; ignored when a session already exists (Databricks, EMR, spark-submit)."""

    section_name: ClassVar[str] = "spark"
    # Only TTB_SPARK_MASTER: spark-submit exports MASTER, which a "master" alias would read (case-insensitively).
    master: str = Field("local[*]", validation_alias=AliasChoices("TTB_SPARK_MASTER"))
    # Spark Connect: sc://host:port/;params, or local[N] for a local Connect server (tests); none: a classic session.
    remote: str | None = Field(None, validation_alias=AliasChoices("TTB_SPARK_REMOTE"))
    # Where managed tables live in a locally built session (catalog mode); none: Spark's default ./spark-warehouse.
    warehouse_dir: str | None = Field(None, validation_alias=AliasChoices("TTB_SPARK_WAREHOUSE_DIR"))
    shuffle_partitions: int = Field(8, ge=1)
    ui_enabled: bool = False
    # Spark's console progress bar ("[Stage 65:=====>  (2 + 2) / 16]") in a locally built session. Off: the job's
    # own progress lines say what runs (one display, not two), and in a log file the bar is carriage-return noise.
    console_progress: bool = False
    # The driver console's log level (log4j2, a locally launched driver: a local session or spark-submit.sh's client
    # mode). warn: warnings and errors, less the known-harmless ones the packaged configuration filters (see
    # ttb_spark/log4j2.properties); info or debug: that level for every logger, the filtered warnings included.
    log_level: Literal["warn", "info", "debug"] = "warn"
    driver_memory: str = "2g"
    # False: expressions are interpreted, not compiled to Java (spark.sql.codegen.wholeStage off, factoryMode
    # NO_CODEGEN). On tiny tables compiling costs more than it saves: Spark generated code for every task of
    # Delta's log replay and every projection, ~37% of a warm gold run's CPU (a JFR profile); off, a warm
    # gold run over the demo's 78 COLAs took 35.6 s instead of 51-60 s. For the test profile only.
    codegen: bool = True
    # JVM options added to a locally launched driver's (after the packaged logging configuration). The test
    # suite's job processes use "-XX:TieredStopAtLevel=1 -XX:-UseCodeCacheFlushing -XX:ReservedCodeCacheSize=240m":
    # a cold one-off daily run then took 88 s of JVM CPU instead of 121 s (the C2 compiler's threads alone took
    # 58 s), at about the same wall time; a long-lived session needs C2 (its warm gold runs took twice as long
    # without it). C1 alone reserves 48 MB of code cache, which a daily run outgrows (it filled 71.6 MB).
    driver_java_options: str = ""
    # False: PySpark stops recording each Column call's Python call site for error messages
    # (spark.python.sql.dataFrameDebugging.enabled): that costs ~5 py4j round trips per call, and a warm daily
    # run then used 2.3 s of Python CPU instead of 5.0 s at the same wall time (bench.stage_bench). For the test
    # profile, whose suite is CPU-bound on two cores; elsewhere errors keep naming the Python line.
    dataframe_debugging: bool = True

    @field_validator("remote")
    @classmethod
    def _remote(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(sc://\S+|local(\[[0-9*]+\])?)$", value):
            raise ValueError(f"must be a Spark Connect URL sc://host:port or local[N], got {value!r}")
        return value

    @field_validator("driver_java_options")
    @classmethod
    def _java_options(cls, value: str) -> str:
        bad = [o for o in value.split() if not re.match(r"^-[A-Za-z0-9_:.+=/,@-]+$", o)]
        if bad:
            raise ValueError(f"must be JVM options separated by spaces, each starting with '-', got {bad[0]!r}")
        return " ".join(value.split())

    @field_validator("warehouse_dir")
    @classmethod
    def _warehouse(cls, value: str | None) -> str | None:
        return None if value is None else _check_uri(value)


# Delta's own floor for VACUUM retention (delta.deletedFileRetentionDuration's default, 7 days):
# below it a VACUUM can delete files a concurrent writer or reader still needs.
DELTA_SAFE_RETENTION_HOURS = 168


class MaintenanceSettings(_Section):
    """The ``maintain`` job: compaction, VACUUM retention, table statistics."""

    section_name: ClassVar[str] = "maintenance"
    vacuum_retention_hours: int = Field(DELTA_SAFE_RETENTION_HOURS, ge=0)
    # Below Delta's safety check only when this says so (no other writer may run during VACUUM).
    vacuum_allow_short_retention: bool = False
    compute_statistics: bool = True  # ANALYZE TABLE where the engine supports it (Databricks; not open-source Delta)

    @model_validator(mode="after")
    def _retention(self) -> MaintenanceSettings:
        if self.vacuum_retention_hours < DELTA_SAFE_RETENTION_HOURS and not self.vacuum_allow_short_retention:
            raise ValueError(
                f"TTB_VACUUM_RETENTION_HOURS: {self.vacuum_retention_hours} is below Delta's {DELTA_SAFE_RETENTION_HOURS}-hour "
                "safety check (files a running writer or reader needs could go); set TTB_VACUUM_ALLOW_SHORT_RETENTION=true "
                "only when nothing else writes during maintenance"
            )
        return self


class ConcurrencySettings(_Section):
    """Runs side by side: the run lock in ``ops.run_locks`` and S3's multi-writer Delta log store."""

    section_name: ClassVar[str] = "concurrency"
    run_lock: bool = True  # a run claims its receipt dates; another run over any of them exits 1 naming it
    lock_stale_minutes: int = Field(360, ge=1)  # a claim not refreshed this long is a crashed run's: ignored
    lock_wait_seconds: float = Field(3600.0, ge=0)  # how long a run's gold stage waits for another run's gold
    # Open-source Delta on S3 with more than one writer (driver): the DynamoDB table of the
    # S3DynamoDBLogStore (io.delta:delta-storage-s3-dynamodb); none: one writer at a time only.
    # Databricks and a catalog's managed tables need none.
    delta_dynamodb_table: str | None = None

    @field_validator("delta_dynamodb_table")
    @classmethod
    def _ddb_table(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", value):
            raise ValueError(f"must be a DynamoDB table name (3-255 of letters, digits, _ . -), got {value!r}")
        return value


class Settings(BaseModel):
    """All settings; pass this object in, never read the environment elsewhere."""

    model_config = {"frozen": True}
    pipeline: PipelineSettings
    extraction: ExtractionSettings
    processing: ProcessingSettings
    consolidation: ConsolidationSettings
    analytics: AnalyticsSettings
    spark: SparkSettings
    maintenance: MaintenanceSettings
    concurrency: ConcurrencySettings

    def fingerprint(self, start: date | None = None, end: date | None = None) -> str:
        """Stable hash of every setting (no secrets live in settings), for the run audit: with ``start..end``,
        the receipt-date range in it is the one a run resolved (``--since-last-run``, ``--rescan-days``)
        instead of the one asked for, so a rerun skips only the finished chunks of the same range."""
        values = self.model_dump(mode="json")
        if start is not None and end is not None:
            values["pipeline"] |= {"partition_start_date": start.isoformat(), "partition_end_date": end.isoformat()}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


SECTIONS: dict[str, type[_Section]] = {
    "pipeline": PipelineSettings,
    "extraction": ExtractionSettings,
    "processing": ProcessingSettings,
    "consolidation": ConsolidationSettings,
    "analytics": AnalyticsSettings,
    "spark": SparkSettings,
    "maintenance": MaintenanceSettings,
    "concurrency": ConcurrencySettings,
}


def conf_dir() -> Traversable:
    """Where the environment profiles live: $TTB_CONF_DIR, else the copies shipped in the package.

    ``ttb_spark/conf`` is a link to the repository's ``conf/`` (the one place to edit them); a wheel
    carries the files themselves, so an installed package finds them on any cluster.
    """
    explicit = os.environ.get("TTB_CONF_DIR")
    if explicit:
        return Path(explicit)
    return resources.files("ttb_spark") / "conf"


def _env_var(section: type[_Section], field: str) -> str:
    return _alias(section.model_fields[field]) or "TTB_" + field.upper()


def _explain(section: type[_Section], error: ValidationError) -> SettingsError:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    field = next((name for name, f in section.model_fields.items() if _alias(f) == field), field)
    message = first["msg"].removeprefix("Value error, ")
    if field not in section.model_fields:
        return SettingsError(f"invalid setting {message}")
    value = first.get("input")
    shown = "" if "got " in message or isinstance(value, dict) else f" (got {value!r})"
    return SettingsError(f"invalid setting {_env_var(section, field)}: {message}{shown}")


def load_settings(env: str | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Settings:
    """Build the settings for ``env`` (default $TTB_ENVIRONMENT, else development).

    ``overrides`` maps section name to field values (from command-line flags); they win over
    everything. Raises :class:`SettingsError` naming the first bad setting.
    """
    env = env or os.environ.get("TTB_ENVIRONMENT") or "development"
    if env not in ENVIRONMENTS:
        raise SettingsError(f"invalid setting TTB_ENVIRONMENT: {env!r} is not one of {', '.join(ENVIRONMENTS)}")
    profile_path = conf_dir() / f"{env}.toml"
    try:
        profile = tomllib.loads(profile_path.read_text()) if profile_path.is_file() else {}
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"invalid settings profile {profile_path}: {exc}") from exc
    profile.setdefault("pipeline", {}).setdefault("environment", env)
    overrides = overrides or {}
    token = _PROFILE.set(profile)
    try:
        built: dict[str, _Section] = {}
        for name, section in SECTIONS.items():
            try:
                given = {k: v for k, v in overrides.get(name, {}).items() if v is not None}
                built[name] = section(**_by_alias(section, given))
            except ValidationError as exc:
                raise _explain(section, exc) from None
    finally:
        _PROFILE.reset(token)
    return Settings(**built)
