"""Storm control on a controllable clock: grouping, repeats, caps, held summaries, the budget."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

import bridge.intake.storm as storm_module
from bridge.events import Event, EventKind, Status
from bridge.intake.holding import HeldSummary
from bridge.intake.pipeline import STORM
from bridge.intake.storm import SUMMARY_MAX_CHARS, flush_due, next_due, summary_text
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    SimAccount,
    Simulator,
    SimulatorSettings,
)
from bridge.plugins.c123.validation import check_content
from bridge.runtime.daemon import Daemon
from bridge.runtime.settings import load_settings

TEAM = ("15102110086", "15102110087", "15102110088")
A = TEAM[0]
# Noon in the budget's zone (the gateway's default, Asia/Shanghai): far from a day boundary.
START = datetime(2026, 3, 2, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
SUBJECTS = ("Disk", "Cpu", "Memory", "Network", "Latency", "Queue", "Cert", "Backup", "Replica")
NAMES = tuple(
    f"{subject}{condition}"
    for subject in (*SUBJECTS, "Api")
    for condition in ("High", "Down", "Full", "Slow", "Flapping")
)
GROUP_SMS = re.compile(r"\[FIRING:(\d+)\] (\S+)")
SUMMARY = re.compile(r"smsbridge held back (\d+) alerts \(([a-z/]+)\): (.*)")


class FakeClock:
    """A clock the test moves by hand; the daemon reads it wherever it asks for the time."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def at(self, moment: float) -> float:
        assert moment >= self.now, "the fake clock never goes back"
        self.now = moment
        return moment


def write_config(tmp_path: Path, gateway: str, sms: str, storm: str = "") -> Path:
    """A config with one alert rule `page` to the team; `sms` is extra keys of its action."""
    path = tmp_path / "config.yaml"
    path.write_text(f"""
server: {{listen: "127.0.0.1:0"}}
store: {{path: {tmp_path / "outbox.sqlite3"}}}
gateway:
  base_url: {gateway}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
polling: {{replies: 1h, reports: 1h, balance: 1h}}
storm: {{held_summary_after: 5m{storm}}}
groups:
  oncall: [{", ".join(TEAM)}]
rules:
  - name: page
    match: {{kind: alert}}
    sms: {{to: [oncall], {sms}}}
""")
    return path


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=10**6),), report_delay=3600, rate_limit=None
    )
    async with Simulator(settings) as sim:
        yield sim


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event the daemon logs while the test runs."""
    with capture_logs() as captured:
        yield captured  # type: ignore[misc]  # captured entries are plain dicts


@asynccontextmanager
async def running(config: Path, clock: FakeClock) -> AsyncIterator[Daemon]:
    daemon = Daemon(load_settings(config), clock=clock)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


def alert(
    clock: FakeClock,
    name: str,
    instance: str = "",
    status: Status = Status.FIRING,
    fingerprint: str | None = None,
) -> Event:
    """An alert received now on the fake clock, fingerprinted by name and instance."""
    labels = {"alertname": name} | ({"instance": instance} if instance else {})
    return Event(
        kind=EventKind.ALERT,
        source="am",
        labels=labels,
        fingerprint=fingerprint if fingerprint is not None else f"{name}/{instance}",
        status=status,
        received_at=datetime.fromtimestamp(clock(), UTC),
    )


def suppressed(daemon: Daemon, reason: str, rule: str = "page") -> float:
    value = daemon.metrics.registry.get_sample_value(
        "smsbridge_sms_suppressed_total", {"rule": rule, "reason": reason}
    )
    return value or 0.0


async def job_texts(daemon: Daemon, number: str | None = None) -> list[str]:
    """Texts of the jobs in the outbox (for one number, or all), oldest first."""
    rows = await daemon.store.read(
        lambda conn: conn.execute("SELECT recipient, text FROM jobs ORDER BY id").fetchall()
    )
    return [row["text"] for row in rows if number is None or row["recipient"] == number]


async def delivered(daemon: Daemon, simulator: Simulator) -> list[tuple[str, str]]:
    """(number, text) of every message at the gateway, once every queued job has reached it."""
    count = len(await job_texts(daemon))
    await simulator.state.wait_for(lambda s: len(s.messages) >= count, timeout=10)
    assert len(simulator.state.messages) == count, "a job reached the gateway twice"
    return [(m.mobile, m.content) for m in simulator.state.messages]


def parse_summary(text: str) -> tuple[int, str, Counter[str]]:
    """(total, reasons, counts by name) of a held-back summary, in either of its two forms."""
    match = SUMMARY.fullmatch(text)
    assert match, f"not a held-back summary: {text!r}"
    total, reasons, body = int(match[1]), match[2], match[3]
    assert "more names" not in body, f"the summary hides names: {text!r}"
    counts: Counter[str] = Counter()
    if body.startswith("×"):  # compact: "×15: A, B; ×3: C"
        for part in body.split("; "):
            count, names = part.removeprefix("×").split(": ", 1)
            for name in names.split(", "):
                counts[name] += int(count)
    else:  # readable: "A×15, B×3, C"
        for item in body.split(", "):
            name, _, count = item.partition("×")
            counts[name] += int(count or 1)
    assert sum(counts.values()) == total, f"the names do not add up to the total: {text!r}"
    return total, reasons, counts


def events_named(logs: Sequence[dict[str, Any]], event: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        entry
        for entry in logs
        if entry["event"] == event and all(entry.get(k) == v for k, v in fields.items())
    ]


# --- the storm --------------------------------------------------------------------------------


async def test_storm_of_1000_alerts_stays_within_the_cap_and_names_everything(
    tmp_path: Path, simulator: Simulator, logs: list[dict[str, Any]]
) -> None:
    """1,000 alerts in 60 s over 50 names: ≤10 SMS per number, every alert named or counted."""
    clock = FakeClock()
    config = write_config(tmp_path, simulator.url, "group_wait: 30s, cap_per_hour: 10")
    # Alert i: name i % 50, instance (i // 50) % 15: per name 15 distinct alerts, and 5 exact
    # repeats (same fingerprint, still firing) that repeat_interval suppresses.
    storm = [(NAMES[i % 50], f"host{(i // 50) % 15}") for i in range(1000)]
    repeats = len(storm) - len(set(storm))
    assert repeats == 250
    async with running(config, clock) as daemon:
        flushed = START
        for i, (name, instance) in enumerate(storm):
            clock.at(START + i * 0.06)  # spread over 60 fake seconds
            await daemon.processor.run_events([alert(clock, name, instance)])
            if clock() - flushed >= 1.0:  # what the storm loop does, once a fake second
                await flush_due(daemon.pipeline)
                flushed = clock()
        # Past every group's wait, then past held_summary_after of the first held message.
        for moment in range(int(START) + 61, int(START) + 61 + 400, 5):
            clock.at(moment)
            await flush_due(daemon.pipeline)
        assert clock() - START < 3600, "all of it happens within the hour"
        messages = await delivered(daemon, simulator)

        group_counts: Counter[str] = Counter()
        held_counts: Counter[str] = Counter()
        held_total = 0
        for number in TEAM:
            texts = [text for to, text in messages if to == number]
            assert len(texts) <= 10, f"{len(texts)} SMS to one number in an hour"
            assert len(await job_texts(daemon, number)) <= 10
            groups = [m for m in map(GROUP_SMS.match, texts) if m]
            summaries = [parse_summary(t) for t in texts if t.startswith("smsbridge held back")]
            assert len(groups) + len(summaries) == len(texts)
            assert summaries, "the held-back summary used the reserved slot"
            per_number: Counter[str] = Counter()
            for group in groups:
                per_number[group[2]] += int(group[1])
            group_counts += per_number
            for _, reasons, counts in summaries:
                assert reasons == "cap"
                per_number += counts
                held_counts += counts
                held_total += sum(counts.values())
            assert set(per_number) == set(NAMES), "every alert name reaches every number"
            # None silently dropped: each distinct alert is in a group SMS or a summary.
            assert per_number.total() == len(storm) - repeats
            assert per_number == Counter(name for name, _ in set(storm))

        assert group_counts, "some alerts went out in group SMS"
        assert held_counts, "some were held back and summarised"
        assert suppressed(daemon, "repeat") == repeats * len(TEAM)
        assert suppressed(daemon, "cap") == held_total
    assert len(events_named(logs, "sms_suppressed", reason="repeat")) == repeats * len(TEAM)
    assert sum(e["alerts"] for e in events_named(logs, "sms_held", reason="cap")) == held_total
    assert len(events_named(logs, "sms_held_summary")) == len(TEAM)


# --- storm control, small ----------------------------------------------------------------------


async def test_group_wait_sends_one_summary_per_group_per_recipient(
    tmp_path: Path, simulator: Simulator
) -> None:
    """Alerts within group_wait become one SMS per alert name per number, sent when it ends."""
    clock = FakeClock()
    config = write_config(tmp_path, simulator.url, "group_wait: 30s")
    async with running(config, clock) as daemon:
        for instance in ("db1", "db2", "db3"):
            await daemon.processor.run_events([alert(clock, "HighLatency", instance)])
        clock.at(START + 10)
        await daemon.processor.run_events([alert(clock, "DiskFull", "db1")])
        clock.at(START + 29)
        await flush_due(daemon.pipeline)
        assert await job_texts(daemon) == [], "nothing goes before the group's wait is over"
        clock.at(START + 31)
        await flush_due(daemon.pipeline)
        clock.at(START + 41)
        await flush_due(daemon.pipeline)
        messages = await delivered(daemon, simulator)
    for number in TEAM:
        assert sorted(text for to, text in messages if to == number) == [
            "[FIRING:1] DiskFull db1",
            "[FIRING:3] HighLatency db1, db2 (+1)",
        ]


async def test_an_alert_fired_and_resolved_within_the_wait_is_summarised_once(
    tmp_path: Path, simulator: Simulator
) -> None:
    """An alert that fired and resolved inside one group_wait is one resolved alert in the
    summary, not one of each; another that still fires is counted as firing."""
    clock = FakeClock()
    config = write_config(tmp_path, simulator.url, "group_wait: 30s")
    async with running(config, clock) as daemon:
        await daemon.processor.run_events([alert(clock, "DiskFull", "db1")])
        clock.at(START + 10)
        await daemon.processor.run_events([alert(clock, "DiskFull", "db1", Status.RESOLVED)])
        await daemon.processor.run_events([alert(clock, "CpuHigh", "db1")])
        clock.at(START + 12)
        await daemon.processor.run_events([alert(clock, "CpuHigh", "db2")])
        await daemon.processor.run_events([alert(clock, "CpuHigh", "db1", Status.RESOLVED)])
        clock.at(START + 45)
        await flush_due(daemon.pipeline)
        messages = await delivered(daemon, simulator)
    assert sorted(text for to, text in messages if to == A) == [
        "[FIRING:1] CpuHigh db2; [RESOLVED:1] db1",
        "[RESOLVED:1] DiskFull db1",
    ]


async def test_repeat_interval_suppresses_repeats_until_resolved(
    tmp_path: Path, simulator: Simulator, logs: list[dict[str, Any]]
) -> None:
    """A repeated firing alert is suppressed and counted; a resolution makes the next one news."""
    clock = FakeClock()
    config = write_config(
        tmp_path,
        simulator.url,
        'repeat_interval: 1h, template: "{{ status }} {{ labels.alertname }}"',
    )
    async with running(config, clock) as daemon:
        steps = [Status.FIRING, Status.FIRING, Status.RESOLVED, Status.FIRING, Status.RESOLVED]
        for minute, status in enumerate(steps):
            clock.at(START + 60 * minute)
            await daemon.processor.run_events([alert(clock, "DiskFull", "db1", status)])
            # Sent before the next one: the gateway output merges equal texts in one batch.
            await delivered(daemon, simulator)
        texts = [text for to, text in await delivered(daemon, simulator) if to == A]
        assert suppressed(daemon, "repeat") == len(TEAM)
    assert texts == [
        "firing DiskFull",
        "resolved DiskFull",
        "firing DiskFull",
        "resolved DiskFull",  # the second episode's resolution is news as well
    ]
    assert len(events_named(logs, "sms_suppressed", reason="repeat", fingerprint="DiskFull/db1"))


async def test_send_resolved_false_sends_no_resolution_but_clears_the_repeat(
    tmp_path: Path, simulator: Simulator
) -> None:
    """With send_resolved false a resolution sends nothing, yet the next firing pages again."""
    clock = FakeClock()
    config = write_config(
        tmp_path,
        simulator.url,
        "repeat_interval: 1h, send_resolved: false, "
        'template: "{{ status }} {{ labels.alertname }}"',
    )
    async with running(config, clock) as daemon:
        for minute, status in enumerate([Status.FIRING, Status.RESOLVED, Status.FIRING]):
            clock.at(START + 60 * minute)
            await daemon.processor.run_events([alert(clock, "DiskFull", "db1", status)])
            await delivered(daemon, simulator)  # sent before the next, as minutes apart
        texts = [text for to, text in await delivered(daemon, simulator) if to == A]
        assert suppressed(daemon, "repeat") == 0
    assert texts == ["firing DiskFull", "firing DiskFull"]


async def test_cap_holds_back_and_the_summary_takes_the_reserved_slot(
    tmp_path: Path, simulator: Simulator, logs: list[dict[str, Any]]
) -> None:
    """Past cap-1 SMS an hour alerts are held; held_summary_after later one summary uses slot N."""
    clock = FakeClock()
    config = write_config(tmp_path, simulator.url, "cap_per_hour: 3")
    async with running(config, clock) as daemon:
        for second, name in enumerate(["A1", "A2", "B1", "B2", "B3"]):
            clock.at(START + second)
            await daemon.processor.run_events([alert(clock, name)])
        first_held = START + 2
        assert len(await job_texts(daemon, A)) == 2, "the third slot is kept for the summary"
        assert suppressed(daemon, "cap") == 3 * len(TEAM)
        assert len(events_named(logs, "sms_held", reason="cap")) == 3 * len(TEAM)
        clock.at(first_held + 299)
        await flush_due(daemon.pipeline)
        assert len(await job_texts(daemon, A)) == 2, "no summary before held_summary_after"
        clock.at(first_held + 301)
        await flush_due(daemon.pipeline)
        texts = [text for to, text in await delivered(daemon, simulator) if to == A]
        assert texts == [
            "[FIRING] A1",
            "[FIRING] A2",
            "smsbridge held back 3 alerts (cap): B1, B2, B3",
        ]
        # The hour's slots are all used: what comes now waits for one to free up.
        await daemon.processor.run_events([alert(clock, "C1")])
        due = await daemon.store.read(lambda conn: next_due(daemon.pipeline, conn))
        assert due == START + 3600, "the storm loop rests until the hour's first send leaves it"
        clock.at(first_held + 700)
        await flush_due(daemon.pipeline)
        assert len(await job_texts(daemon, A)) == 3
        # The first send leaves the hour: the summary of what was held since then goes.
        clock.at(START + 3601)
        await flush_due(daemon.pipeline)
        texts = [text for to, text in await delivered(daemon, simulator) if to == A]
    assert texts[3:] == ["smsbridge held back 1 alerts (cap): C1"]


async def test_daily_budget_holds_and_counts_until_the_next_day(
    tmp_path: Path, simulator: Simulator, logs: list[dict[str, Any]]
) -> None:
    """Past the daily segment budget SMS are held (reason budget), counted, summarised next day."""
    clock = FakeClock()
    config = write_config(tmp_path, simulator.url, "", ", daily_segment_budget: 6")
    async with running(config, clock) as daemon:
        for second, name in enumerate(["A1", "A2", "B1"]):
            clock.at(START + second)
            await daemon.processor.run_events([alert(clock, name)])
        # One segment to each of three numbers per alert: two alerts use the budget up.
        assert [t for _, t in await delivered(daemon, simulator)].count("[FIRING] B1") == 0
        assert suppressed(daemon, "budget") == len(TEAM)
        assert len(events_named(logs, "sms_held", reason="budget")) == len(TEAM)
        clock.at(START + 2 + 301)
        await flush_due(daemon.pipeline)
        assert len(await job_texts(daemon)) == 6, "still no budget today: still held"
        clock.at(START + 86400)
        await flush_due(daemon.pipeline)
        messages = await delivered(daemon, simulator)
    assert sorted(to for to, text in messages if "held back" in text) == sorted(TEAM)
    assert {text for _, text in messages if "held back" in text} == {
        "smsbridge held back 1 alerts (budget): B1"
    }


async def test_held_and_grouped_alerts_survive_a_restart(
    tmp_path: Path, simulator: Simulator
) -> None:
    """Alerts held back or waiting in a group when the daemon stops are summarised after restart."""
    clock = FakeClock()
    config = write_config(tmp_path, simulator.url, "group_wait: 30s, cap_per_hour: 2")
    async with running(config, clock) as daemon:
        await daemon.processor.run_events([alert(clock, "First")])
        clock.at(START + 31)
        await flush_due(daemon.pipeline)  # sent: the hour's only ordinary slot
        await daemon.processor.run_events([alert(clock, "Held")])
        clock.at(START + 62)
        await flush_due(daemon.pipeline)  # held back by the cap
        await daemon.processor.run_events([alert(clock, "Waiting")])  # still in its group
        assert suppressed(daemon, "cap") == len(TEAM)
    async with running(config, clock) as daemon:
        clock.at(START + 93)
        await flush_due(daemon.pipeline)  # the waiting group flushes: held too
        clock.at(START + 62 + 301)
        await flush_due(daemon.pipeline)
        texts = [text for to, text in await delivered(daemon, simulator) if to == A]
    assert texts == ["[FIRING:1] First", "smsbridge held back 2 alerts (cap): Held, Waiting"]


async def test_an_idle_storm_loop_rests(
    tmp_path: Path, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing due the storm loop waits for a wake-up instead of flushing in a busy loop."""
    config = write_config(tmp_path, simulator.url, "group_wait: 30s")
    async with running(config, FakeClock()) as daemon:
        calls = 0

        async def counted(pipeline: Any, fence: Any = None) -> None:
            nonlocal calls
            calls += 1
            await flush_due(pipeline, fence)

        monkeypatch.setattr(storm_module, "flush_due", counted)
        daemon._wake([STORM])  # what a submit that grouped or held an alert does
        # Nothing to await here: the point is that nothing happens. A spinning loop makes
        # thousands of calls in this time.
        await asyncio.sleep(0.3)
    assert 1 <= calls <= 3


# --- the summary's text ------------------------------------------------------------------------


def held(counts: dict[str, int], reasons: tuple[str, ...] = ("cap",)) -> HeldSummary:
    return HeldSummary("sms", A, START, counts, reasons)


def test_summary_names_the_most_frequent_first() -> None:
    """A short summary reads `Name×count`, most frequent first, a single alert without a count."""
    text = summary_text(held({"DiskFull": 17, "HighLatency": 20, "Backup": 1}))
    assert text == "smsbridge held back 38 alerts (cap): HighLatency×20, DiskFull×17, Backup"
    assert parse_summary(text)[0] == 38


def test_summary_of_many_names_is_compact_and_names_every_one() -> None:
    """Too many names for the readable form: names sharing a count are listed once under it."""
    counts = {name: 15 if n % 5 else n % 7 + 2 for n, name in enumerate(NAMES)}
    text = summary_text(held(counts, ("budget", "cap")))
    assert len(text) <= SUMMARY_MAX_CHARS
    total, reasons, parsed = parse_summary(text)
    assert (total, reasons, dict(parsed)) == (sum(counts.values()), "budget/cap", counts)
    assert text.split(": ", 1)[1].startswith("×15: ")


def test_summary_names_are_cleaned_like_any_sms() -> None:
    """Alert names carry label text: escape sequences and controls never reach the gateway."""
    text = summary_text(held({"\x1b[31mDiskFull\x1b[0m": 2, "Cpu\x00High\u202e": 1, "\x1b": 1}))
    assert text == "smsbridge held back 4 alerts (cap): DiskFull×2, Cpu High, unnamed"
    check_content(text)


def test_summary_too_long_for_any_form_counts_the_names_it_cannot_show() -> None:
    """Past the gateway's length even in compact form, the rest are counted, never lost."""
    counts = {f"VeryLongAlertNameNumber{n:03d}ThatGoesOn": 2 for n in range(60)}
    text = summary_text(held(counts))
    assert len(text) <= SUMMARY_MAX_CHARS
    assert text.startswith("smsbridge held back 120 alerts (cap): ×2: ")
    shown = len(text.split(": ", 2)[2].split(", "))
    assert text.endswith(f" (+{60 - shown} more names)")
