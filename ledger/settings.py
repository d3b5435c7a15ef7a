"""The one settings object: ``CXL_*`` environment variables, mirrored by CLI flags.

Nothing else in the project reads the environment.
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlparse

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.errors import ConfigError
from ledger.instants import parse_duration, parse_severity_targets

_SQL_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def withhold_from_libpq() -> list[str]:
    """Remove libpq's own variables (``PG*``: ``PGOPTIONS``, ``PGSERVICE``, ``PGTARGETSESSIONATTRS``
    …) from this process's environment, before a PostgreSQL connection is made.

    libpq fills every connection parameter the ledger does not give from them, so a variable set
    for ``psql`` would silently reach the ledger's sessions (a read-only target, other options, a
    service file naming another server). ``CXL_STORE`` alone decides the connection; worker
    processes inherit the cleaned environment. Returns the names removed."""
    names = [name for name in os.environ if name.startswith("PG")]
    for name in names:
        del os.environ[name]
    return names


@dataclass(frozen=True)
class ComplaintTargets:
    """Service-level targets for complaints, per severity 1–5: time to acknowledge, to resolve."""

    acknowledge: dict[int, timedelta]
    resolve: dict[int, timedelta]


class Settings(BaseSettings):
    """Where the ledger lives and which Kafka it talks to.

    ``kafka_bootstrap`` unset means *embedded*: commands that run the whole pipeline in one process
    start a throw-away Tansu broker; commands whose effect would vanish with it refuse to.
    """

    model_config = SettingsConfigDict(env_prefix="CXL_", extra="ignore")

    home: Path = Field(
        default=Path(".cxl"), description="Directory for the default store and projections."
    )
    store: str | None = Field(
        default=None,
        description="SQLite file path or postgresql:// URL of the ledger store; default HOME/ledger.sqlite.",
    )
    key_store: Path | None = Field(
        default=None,
        description="SQLite file of the per-customer data keys; default HOME/keys.sqlite.",
    )
    kek_file: Path | None = Field(
        default=None,
        description="Key-encryption key file (created on first use); default "
        "~/.config/cx-ledger/kek of the user running cxl, apart from the ledger's files.",
    )
    checkpoint_key: Path | None = Field(
        default=None,
        description="Ed25519 key that signs checkpoints (created on first use, mode 0600); "
        "default HOME/checkpoint.key.",
    )
    checkpoint_every: int = Field(
        default=10_000,
        ge=1,
        le=100_000_000,
        description="While consuming, publish a checkpoint after this many newly sealed events…",
    )
    checkpoint_interval_s: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="…or this many seconds after the last one, when events were sealed since.",
    )
    checkpoints_topic: str = "cx.checkpoints"
    access_keys: Path | None = Field(
        default=None,
        description="SQLite file of the HTTP API's keys (hashed); default HOME/access.sqlite.",
    )
    http_host: str = Field(default="127.0.0.1", description="Address `cxl serve` listens on.")
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="Port `cxl serve` listens on (0: any free one)."
    )
    http_max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Largest body `POST /v1/events` reads; larger is 413.",
    )
    http_max_events: int = Field(
        default=1000, ge=1, le=100_000, description="Most events in one `POST /v1/events` body."
    )
    serve_max_lag: int = Field(
        default=10_000,
        ge=1,
        le=100_000_000,
        description="`/readyz` fails while the projections are more sealed events behind than this.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="`cxl serve` logs: text lines, or JSON lines (one per request)."
    )
    alerts_topic: str = Field(default="cx.alerts", description="Topic alerts are published to.")
    at_risk_horizon: str = Field(
        default="48h",
        description="How far ahead a promise counts as at risk (`cxl at-risk`, alerts, the "
        "`promises_at_risk` view): 90m, 48h, 7d.",
    )
    alerts_interval_s: float = Field(
        default=30.0,
        ge=1,
        le=86_400,
        allow_inf_nan=False,
        description="How often `cxl alerts` and `cxl serve` look for new alerts.",
    )
    alerts_lookback: str = Field(
        default="7d",
        description="Overdue, broken and SLA conditions older than this are not alerted "
        "(a first run on a long history does not flood the topic).",
    )
    complaint_ack_targets: str = Field(
        default="5:4h,4:8h,3:24h,2:48h,1:72h",
        description="Time to acknowledge a complaint, per severity (5 = most severe).",
    )
    complaint_resolve_targets: str = Field(
        default="5:2d,4:3d,3:7d,2:14d,1:30d",
        description="Time to resolve a complaint, per severity (5 = most severe).",
    )
    contact_saturation: int = Field(
        default=8,
        ge=1,
        le=1_000_000,
        description="Outbound touchpoints in 30 days at which a customer counts as saturated.",
    )
    kafka_bootstrap: str | None = Field(
        default=None, description="host:port[,host:port]; unset = embedded broker."
    )
    events_topic: str = "cx.events"
    ledger_topic: str = "cx.ledger"
    dlq_topic: str = "cx.events.dlq"
    partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions for topics the ledger creates."
    )
    batch_size: int = Field(
        default=5000, ge=1, le=1_000_000, description="Records per sealing transaction."
    )
    store_pool_size: int = Field(
        default=2,
        ge=1,
        le=100,
        description="PostgreSQL connections each process keeps open to the ledger store (up to "
        "10 more while it is busier).",
    )
    store_statement_timeout_s: float = Field(
        default=60.0,
        ge=0.1,
        le=3600,
        allow_inf_nan=False,
        description="Longest a PostgreSQL statement of the ledger store may run, lock waits "
        "included, before it fails (a write is then retried, as after a lost connection).",
    )
    store_connect_timeout_s: float = Field(
        default=5.0,
        ge=1,
        le=600,
        allow_inf_nan=False,
        description="Seconds connecting to the PostgreSQL ledger store may take.",
    )
    stream_cache: int = Field(
        default=50_000,
        ge=1,
        le=100_000_000,
        description="Customers whose stream heads (and data keys) a sealing process keeps in "
        "memory; the others are read from the store when their next event comes.",
    )
    ingest_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Ingest processes, each sealing its share of the partitions (Kafka's unit of order).",
    )
    consumer_group: str | None = Field(
        default=None,
        min_length=1,
        max_length=249,
        description="Kafka consumer group `cxl consume` / `cxl serve` join, to share the events "
        "topic's partitions with other processes and hosts; unset = this process (and its "
        "workers) reads every partition.",
    )
    group_session_timeout_s: float = Field(
        default=10.0,
        ge=1,
        le=3600,
        allow_inf_nan=False,
        description="How long the group coordinator waits for a silent member before handing "
        "its partitions to the others.",
    )
    group_heartbeat_s: float = Field(
        default=1.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description="Heartbeat interval of a group member (under a third of the session timeout).",
    )
    group_max_poll_interval_s: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        allow_inf_nan=False,
        description="Longest pause between polls (one sealing batch) before a member is dropped; "
        "also how long a rebalance waits for members to rejoin.",
    )
    group_join_timeout_s: float | None = Field(
        default=None,
        ge=1,
        le=86_400,
        allow_inf_nan=False,
        description="Longest a group member waits for the coordinator to assign it partitions "
        "(at start and after each rebalance) before it stops with a broker error; unset = twice "
        "the max poll interval plus the session timeout, the longest a healthy rebalance takes.",
    )
    kafka_timeout_s: float = Field(
        default=10.0, gt=0, le=600, allow_inf_nan=False, description="Bound on every Kafka call."
    )

    @field_validator("store")
    @classmethod
    def _store_is_sqlite_path_or_postgres_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if "://" in value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a SQLite file path or a postgresql:// URL")
        if "://" in value:
            query = parse_qs(urlparse(value).query, keep_blank_values=True)
            unknown = sorted(set(query) - {"schema"})
            if unknown:
                raise ValueError(f"unknown parameter {unknown[0]!r}; the only one is ?schema=NAME")
            if len(query.get("schema", [])) > 1:
                raise ValueError("?schema= is given more than once; name one schema")
            for schema in query.get("schema", []):
                if not _SQL_IDENTIFIER.fullmatch(schema):
                    raise ValueError(
                        f"schema {schema!r} is not a plain SQL identifier "
                        "(letters, digits and _, not starting with a digit, at most 63)"
                    )
        return value

    @field_validator("at_risk_horizon", "alerts_lookback")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        try:
            parse_duration(value, "value")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("value ")) from None
        return value

    @field_validator("complaint_ack_targets", "complaint_resolve_targets")
    @classmethod
    def _are_severity_targets(cls, value: str) -> str:
        try:
            parse_severity_targets(value, "value")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("value").lstrip(": ")) from None
        return value

    @property
    def store_url(self) -> str:
        return self.store or str(self.home / "ledger.sqlite")

    @property
    def access_keys_path(self) -> Path:
        return self.access_keys or self.home / "access.sqlite"

    @property
    def alerts_log_path(self) -> Path:
        """Which alerts were confirmed delivered (``consumers.alerts.AlertLog``)."""
        return self.home / "alerts.sqlite"

    @property
    def key_store_path(self) -> Path:
        return self.key_store or self.home / "keys.sqlite"

    @property
    def checkpoint_key_path(self) -> Path:
        return self.checkpoint_key or self.home / "checkpoint.key"

    @property
    def kek_path(self) -> Path:
        """``CXL_KEK_FILE``, or ``.config/cx-ledger/kek`` under the home directory of the user
        running cxl (from the password database: no environment variable decides it)."""
        if self.kek_file is not None:
            return self.kek_file
        return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".config" / "cx-ledger" / "kek"

    def check_key_places(self) -> None:
        """Refuse a key store or KEK that is the ledger store, the projections or each other:
        keys kept in the files they protect would protect nothing."""
        places = {"CXL_KEY_STORE": self.key_store_path, "CXL_KEK_FILE": self.kek_path}
        ledger_files: dict[str, str | Path] = {
            "the ledger store": self.store_url,
            "the projections": self.projections_path,
        }
        for setting, path in places.items():
            for what, other in ledger_files.items():
                if "://" not in str(other) and _same_file(path, Path(other)):
                    raise ConfigError(
                        f"{setting} {path} is {what}; keep keys apart from the ledger"
                    )
        if _same_file(self.key_store_path, self.kek_path):
            raise ConfigError(f"CXL_KEK_FILE {self.kek_path} is the key store it protects")

    @property
    def horizon(self) -> timedelta:
        return parse_duration(self.at_risk_horizon, "CXL_AT_RISK_HORIZON")

    @property
    def lookback(self) -> timedelta:
        return parse_duration(self.alerts_lookback, "CXL_ALERTS_LOOKBACK")

    @property
    def complaint_targets(self) -> ComplaintTargets:
        return ComplaintTargets(
            parse_severity_targets(self.complaint_ack_targets, "CXL_COMPLAINT_ACK_TARGETS"),
            parse_severity_targets(self.complaint_resolve_targets, "CXL_COMPLAINT_RESOLVE_TARGETS"),
        )

    @property
    def projections_path(self) -> Path:
        return self.home / "projections.duckdb"

    @property
    def topics(self) -> dict[str, int]:
        """Every topic the ledger uses, with the partition count it creates them with."""
        return {
            self.events_topic: self.partitions,
            self.dlq_topic: self.partitions,
            self.ledger_topic: self.partitions,
            self.alerts_topic: self.partitions,
        }

    @property
    def is_embedded(self) -> bool:
        return not self.kafka_bootstrap


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def load_settings(**overrides: object) -> Settings:
    """Read ``CXL_*`` variables, then apply CLI flag values that were given (not None)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"CXL_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
