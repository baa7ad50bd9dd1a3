"""Prometheus metrics, one registry per daemon so tests can run several side by side."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from decimal import Decimal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

# `_created` series double every counter on the page and nothing here alerts on them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# The carriers' delivery codes the gateway documents (C123_API.md, getSendState). A label takes
# only these, "none" and "other": a code is the gateway's text, and each new label value is a
# new series kept for the daemon's life.
CARRIER_CODES = (
    "DELIVRD",
    "EXPIRED",
    "DELETED",
    "UNDELIV",
    "ACCEPTD",
    "UNKNOWN",
    "REJECTD",
    "DTBLACK",
    "DTWORDS",
    "DTFAILD",
    "ERRBUSY",
)
NO_CODE = "none"
OTHER_CODE = "other"
CARRIER_LABELS = (*CARRIER_CODES, NO_CODE, OTHER_CODE)
_KNOWN_CODES = frozenset(CARRIER_CODES)


def carrier_code_label(code: str | None) -> str:
    """A carrier code as a label value: a documented code, "none" when empty, else "other"."""
    if code is None or not code.strip():
        return NO_CODE
    normal = code.strip().upper()
    return normal if normal in _KNOWN_CODES else OTHER_CODE


class DecimalCounter(Collector):
    """A counter of money: the running total is an exact Decimal, shown exactly when scraped.

    A float counter adds 0.1 thirteen times to 1.2999999999999998; this one reads 1.3.
    """

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self._total = Decimal(0)
        self._lock = threading.Lock()
        registry.register(self)

    def inc(self, amount: Decimal) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            self._total += amount

    @property
    def value(self) -> Decimal:
        return self._total

    def collect(self) -> Iterable[Metric]:
        # A total of up to 15 significant digits survives float() and prints as written.
        yield CounterMetricFamily(self.name, self.documentation, value=float(self._total))


class Metrics:
    """Every metric smsbridge exports; names follow Prometheus conventions."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter(
            "smsbridge_events_received",
            "Events taken by inputs and pollers.",
            ["input", "kind"],
            registry=r,
        )
        self.duplicates = Counter(
            "smsbridge_webhook_duplicates",
            "Deliveries seen before and not processed again.",
            ["input"],
            registry=r,
        )
        self.rule_matches = Counter(
            "smsbridge_rule_matches", "Events matched by each rule.", ["rule"], registry=r
        )
        self.messages = Counter(
            "smsbridge_messages",
            "Messages by output and final outcome.",
            ["output", "outcome"],
            registry=r,
        )
        self.suppressed = Counter(
            "smsbridge_sms_suppressed",
            "SMS not sent now, by reason (repeat, cap, budget); held ones reach a summary.",
            ["rule", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "smsbridge_message_retries",
            "Deliveries put back to try again, by cause.",
            ["output", "code"],
            registry=r,
        )
        self.segments = Counter(
            "smsbridge_sms_segments", "SMS segments billed by the gateway.", registry=r
        )
        self.cost = DecimalCounter(
            "smsbridge_sms_cost_yuan", "SMS cost billed by the gateway, in yuan.", registry=r
        )
        self.account_paused = Gauge(
            "smsbridge_account_paused",
            "1 while the gateway account is paused (its messages held), by reason.",
            ["reason"],
            registry=r,
        )
        self.outbox_jobs = Gauge(
            "smsbridge_outbox_jobs", "Jobs in the outbox by state.", ["state"], registry=r
        )
        self.outbox_oldest = Gauge(
            "smsbridge_outbox_oldest_pending_age_seconds",
            "Age of the oldest job not yet settled (0 when none).",
            registry=r,
        )
        self.gateway_duration = Histogram(
            "smsbridge_gateway_request_duration_seconds",
            "Gateway calls by action and outcome.",
            ["action", "result"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.reports = Counter(
            "smsbridge_delivery_reports",
            "Delivery reports by carrier code (documented codes, none, other).",
            ["carrier_code"],
            registry=r,
        )
        # Every value exists from the start, so rate() over UNDELIV works from its first report.
        for label in CARRIER_LABELS:
            self.reports.labels(label)
        self.pages = Counter(
            "smsbridge_pages", "Pages queued, by escalation policy.", ["policy"], registry=r
        )
        self.pages_held = Counter(
            "smsbridge_pages_held",
            "Pages held by a contact's quiet hours (released as one digest when they end).",
            registry=r,
        )
        self.escalations = Counter(
            "smsbridge_escalations",
            "Escalations before their time, by cause (asked, failed_delivery, report_timeout, "
            "ack_timeout).",
            ["cause"],
            registry=r,
        )
        self.incident_changes = Counter(
            "smsbridge_incident_changes",
            "Incident transitions by change (opened, acknowledged, resolved, ...).",
            ["change"],
            registry=r,
        )
        self.incidents = Gauge(
            "smsbridge_incidents",
            "Incidents not yet resolved, by state (triggered, acknowledged); read at scrape.",
            ["state"],
            registry=r,
        )
        for state in ("triggered", "acknowledged"):
            self.incidents.labels(state)
        self.member_unreachable = Gauge(
            "smsbridge_oncall_member_unreachable",
            "1 for each schedule member whose last page was not delivered (failed, or no "
            "report in time); read at scrape.",
            ["schedule", "member"],
            registry=r,
        )
        self.time_to_acknowledge = Histogram(
            "smsbridge_incident_time_to_acknowledge_seconds",
            "From an incident opening to its first acknowledgement.",
            registry=r,
            buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400),
        )
        self.replies = Counter(
            "smsbridge_replies_received", "SMS replies fetched from the gateway.", registry=r
        )
        self.replies_forwarded = Counter(
            "smsbridge_replies_forwarded",
            "Replies that produced a message to somewhere.",
            registry=r,
        )
        self.balance = Gauge(
            "smsbridge_gateway_balance_yuan", "The gateway account balance.", registry=r
        )
        self.last_poll = Gauge(
            "smsbridge_last_successful_poll_timestamp_seconds",
            "When each gateway poll last succeeded.",
            ["action"],
            registry=r,
        )
        self.reload_success = Gauge(
            "smsbridge_config_last_reload_successful", "1 if the last reload worked.", registry=r
        )
        self.reload_time = Gauge(
            "smsbridge_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully.",
            registry=r,
        )
        self.store_commits = Counter(
            "smsbridge_store_commits", "Group commits of the outbox store.", registry=r
        )
        self.instance_info = Gauge(
            "smsbridge_instance_info",
            "Always 1: the id this instance goes by among those on one database.",
            ["instance"],
            registry=r,
        )
        self.lease_held = Gauge(
            "smsbridge_lease_held",
            "1 while this instance holds the lease (poller:<account>, processor), else 0.",
            ["lease"],
            registry=r,
        )
        self.lease_age = Gauge(
            "smsbridge_lease_age_seconds",
            "How long this instance has held the lease without a break (0 when it does not).",
            ["lease"],
            registry=r,
        )
        self.poll_answers_fenced = Counter(
            "smsbridge_poll_answers_fenced",
            "Poll answers not stored: another instance had taken the account's lease over.",
            registry=r,
        )
        self.task_restarts = Counter(
            "smsbridge_task_restarts",
            "Background tasks restarted after they failed, by task.",
            ["task"],
            registry=r,
        )
