"""The whole config file: one model per top-level section."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)

from bridge.config import ConfigModel, Duration, FilePath, PositiveDuration, SecretFile
from bridge.config.console import ConsoleConfig
from bridge.config.oncall import OncallConfig
from bridge.plugins.c123.config import C123Config
from bridge.rules import Contacts, Groups, Rules

DEFAULT_LISTEN = "127.0.0.1:9680"


class ServerConfig(ConfigModel):
    """Where webhooks, health checks and metrics are served."""

    listen: str = DEFAULT_LISTEN
    max_body: Annotated[int, Field(gt=0)] = 1024 * 1024  # bytes; larger requests get 413
    shutdown_timeout: PositiveDuration = timedelta(seconds=10)
    # A request's head, and then its body, must arrive within this; an idle connection is
    # closed after it too. Slow senders (slowloris) cannot hold connections open.
    read_timeout: PositiveDuration = timedelta(seconds=10)
    # Proxies in front (TLS) whose X-Forwarded-For/-Proto/-Host are believed; from others
    # those headers are ignored.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected host:port, e.g. 127.0.0.1:9680 (port 0 picks a free one)")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class StoreConfig(ConfigModel):
    """The store: a SQLite file (`path`; under systemd in the StateDirectory), or a PostgreSQL
    database (`url`) that several instances share."""

    path: FilePath = Path("smsbridge.sqlite3")
    # postgresql://user@host:port/dbname, e.g. ${SMSBRIDGE_DATABASE_URL}; never printed back.
    url: SecretStr | None = None
    # The password, read from a file (a systemd credential) rather than written in the URL.
    password_file: SecretFile | None = None
    # How long settled messages, their events and raw poll answers are kept.
    retention: PositiveDuration = timedelta(days=30)

    @field_validator("retention")
    @classmethod
    def _at_least_a_day(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=1):
            # Caps and the daily budget count the messages of the past day.
            raise ValueError("expected a duration of at least 1d (caps and budgets count a day)")
        return value

    @field_validator("url")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        # Imported here: a SQLite deployment never loads psycopg.
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        text = value.get_secret_value()
        if not text.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected a postgresql:// URL")
        try:
            conninfo_to_dict(text)
        except psycopg.ProgrammingError:  # its message would repeat the URL (and a password)
            raise ValueError("expected a postgresql:// URL libpq can read") from None
        return value

    @model_validator(mode="after")
    def _one_backend(self) -> Self:
        if self.url is not None and "path" in self.model_fields_set:
            raise ValueError("set one of path (SQLite) or url (PostgreSQL), not both")
        if self.password_file is not None and self.url is None:
            raise ValueError("password_file is for a PostgreSQL store: set url too")
        return self

    def conninfo(self) -> str | None:
        """The PostgreSQL connection string, with the password from `password_file`; None for
        SQLite."""
        if self.url is None:
            return None
        url = self.url.get_secret_value()
        if self.password_file is None:
            return url
        from psycopg.conninfo import make_conninfo

        password = self.password_file.read_text(encoding="utf-8").strip()
        return make_conninfo(url, password=password)


class PollingConfig(ConfigModel):
    """How often the gateway is asked for replies, delivery reports and the balance."""

    replies: PositiveDuration = timedelta(seconds=10)
    reports: PositiveDuration = timedelta(seconds=30)
    balance: PositiveDuration = timedelta(minutes=5)
    low_balance: Annotated[Decimal, Field(ge=0)] | None = None  # yuan; below it: a system event


class ConversationTarget(ConfigModel):
    """A place to post: an output, and a channel and thread in it."""

    output: str
    channel: str = ""
    thread: str = ""


class ConversationsConfig(ConfigModel):
    """How replies find the thread (or alert) the SMS they answer came from."""

    ttl: PositiveDuration = timedelta(hours=24)  # how long a reply still belongs to its SMS
    reply_codes: bool = True  # SMS from chat to a number with several open threads end in "#2"
    default: ConversationTarget | None = None  # where replies with no (or an unknown) code go
    report_deliveries: bool = False  # post "delivered" / "failed: UNDELIV" into the thread


class StormConfig(ConfigModel):
    """Account-wide storm control; per-rule limits live in each rule's `sms:`."""

    held_summary_after: PositiveDuration = timedelta(minutes=5)
    daily_segment_budget: Annotated[int, Field(gt=0)] | None = None


class DispatchConfig(ConfigModel):
    """How the outbox sends and retries."""

    max_attempts: Annotated[int, Field(ge=1)] = 20
    backoff_max: PositiveDuration = timedelta(minutes=10)
    batch_size: Annotated[int, Field(ge=1, le=10000)] = 500
    # Calls in flight at once per output (per gateway account), within its rate limit.
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    # A message held (low balance, paused account) longer than this after it was queued fails.
    max_hold: PositiveDuration = timedelta(hours=24)


class BulkConfig(ConfigModel):
    """Bulk sends from a file (`smsbridge send --csv`)."""

    # yuan; a run estimated above it asks first (without a terminal it needs --yes)
    confirm_above: Annotated[Decimal, Field(ge=0)] = Decimal("10")


class SimulatorConfig(ConfigModel):
    """The built-in simulator that stands in when there is no `gateway:` section."""

    port: Annotated[int, Field(ge=0, le=65535)] = 0  # on 127.0.0.1; 0 picks a free port
    report_delay: Duration = timedelta(seconds=1)  # from send to delivery report


class PluginInstance(BaseModel):
    """An input or output instance: its `type`; the options are its plugin's to validate."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[str, Field(min_length=1)]


class Config(ConfigModel):
    """smsbridge's config; every section is optional and an empty file is valid."""

    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    gateway: C123Config | None = None  # none: a built-in simulator stands in for the gateway
    contacts: Contacts = Field(default_factory=dict)
    groups: Groups = Field(default_factory=dict)
    inputs: dict[str, PluginInstance] = Field(default_factory=dict)
    outputs: dict[str, PluginInstance] = Field(default_factory=dict)
    rules: Rules = Field(default_factory=list)
    polling: PollingConfig = PollingConfig()
    conversations: ConversationsConfig = ConversationsConfig()
    storm: StormConfig = StormConfig()
    dispatch: DispatchConfig = DispatchConfig()
    bulk: BulkConfig = BulkConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    oncall: OncallConfig | None = None  # paging: schedules, escalation policies, replies
    console: ConsoleConfig | None = None  # the web console; off unless configured
