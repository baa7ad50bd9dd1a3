"""Ingest figures: server CPU per webhook against bare aiohttp, latencies, and daemon RSS.

Run: .venv/bin/python bench/ingest.py [--quick] [--json]
(--quick is a smoke run of small counts, under a minute; the full run takes a few minutes.)
Needs `wrk` (Debian's package; installed with apt-get when run as root, see bench/wrkload.py).

What runs where, all on 127.0.0.1:
- the daemons are real `smsbridge run -c <temp config>` subprocesses, each store in a temp dir,
  each log (JSON lines) written to a file there rather than a pipe this process would drain;
- the baseline is a separate `python -c` subprocess: a bare aiohttp handler that does
  `await request.json()` and answers `{"ok": true}`, nothing else;
- the CPU figures (section 1) load each server with `wrk` (one thread, keep-alive connections,
  a unique body per request from a Lua script) and divide the server process's CPU time by
  the requests it served: the accept path (a daemon whose processor is held), the full path
  (a daemon that sends every alert, its rounds ending once the gateway has every SMS), and the
  bare handler, measured in turn in each round, the order rotating; ratios are taken within
  a round, and min / median / max over the rounds are reported;
- this process hosts the c123 simulator the daemons send to, and is the load generator of the
  latency, burst and memory parts (aiohttp client), so the simulator's clock is theirs.
Unless --no-pin, this process and wrk keep the first CPU and the servers get the others, and
the servers not being measured are SIGSTOPped, so each side meets the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import structlog
import wrkload
import yaml

from bridge.outbox.jobs import HOLDS
from bridge.plugins.c123.simulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_AUTHKEY,
    SimAccount,
    Simulator,
    SimulatorSettings,
)
from bridge.plugins.c123.simulator.timing import utcnow

TOKEN = "bench-ingest-token"  # noqa: S105 - a throwaway token for a local daemon
SMSBRIDGE = str(Path(sys.executable).parent / "smsbridge")
RUNNER = str(Path(__file__).with_name("daemon_runner.py"))
EXAMPLE = Path(__file__).parent.parent / "config.example.yaml"
START_TIMEOUT = 30.0
DRAIN_TIMEOUT = 180.0
IDLE_SECONDS = 2.0  # how long idle CPU is measured

# The baseline: what aiohttp alone costs to take a JSON body and answer. It prints the same
# `daemon_started` line as the daemon so both are started and found the same way.
BARE_SERVER = """
import asyncio, json
from aiohttp import web

async def handle(request):
    await request.json()
    return web.json_response({"ok": True})

async def main():
    app = web.Application()
    app.router.add_post("/hooks/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    print(json.dumps({"event": "daemon_started", "url": url}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each part does (--quick shrinks every count), and on which CPUs."""

    rounds: int  # of the CPU figures: each measures every side once
    concurrency: int  # wrk's connections
    latency_rate: float  # alerts a second
    latency_seconds: float
    pending_requests: int  # webhooks of PENDING_ALERTS alerts for the RSS figure
    teams: int  # contacts; alert n goes to team n % teams
    burst_reports: int  # delivery reports in one getSendState answer
    burst_seconds: float  # webhooks at latency_rate while the burst is processed
    wrk_seconds: int  # each wrk run of the CPU figures
    server_cpus: frozenset[int] | None = None  # None: servers run wherever the kernel puts them
    client_cpus: frozenset[int] | None = None  # where wrk runs
    # PostgreSQL URLs for the CPU figures' accept and full-path daemons (empty: a SQLite file
    # each); `database_pid` is their cluster's postmaster, whose CPU is counted apart.
    databases: tuple[str, str] | None = None
    database_pid: int = 0


FULL = Plan(5, 32, 200.0, 10.0, 1000, 100, 20000, 20.0, 4)
QUICK = Plan(1, 32, 200.0, 2.0, 50, 100, 2000, 4.0, 1)
PENDING_ALERTS = 100  # alerts per webhook when filling the outbox


# --- processes -------------------------------------------------------------------------------


@dataclass(slots=True)
class Server:
    """A server subprocess and where it listens."""

    name: str
    proc: asyncio.subprocess.Process
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP the server meanwhile, so that whatever it does while idle (it should do
        nothing) cannot take a core from the side being measured."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process would not see SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def start_server(
    name: str,
    argv: Sequence[str],
    log: Path,
    cpus: frozenset[int] | None,
    env: Mapping[str, str] | None = None,
) -> Server:
    """Start argv with stdout to `log` (and `env` added to this environment); return once it
    logged `daemon_started` with its URL."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    if cpus is not None:
        # Set before the interpreter is up, so every thread it starts inherits it.
        os.sched_setaffinity(proc.pid, cpus)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.returncode is None:
        if url := started_url(log):
            if cpus is not None:
                pin_threads(proc.pid, cpus)  # in case a thread started before the first call
            return Server(name, proc, url, log)
        await asyncio.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()
    raise RuntimeError(f"{name} did not start; the end of its log {log}:\n{tail(log)}")


def pin_threads(pid: int, cpus: frozenset[int]) -> None:
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


def started_url(log: Path) -> str | None:
    """The URL of the `daemon_started` line of a JSON log, once it is there."""
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "daemon_started":
                return str(event["url"])
    return None


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


@dataclass(frozen=True, slots=True)
class Tuning:
    """The config values a part of a bench changes: polling intervals and retention."""

    reports: str = "1h"
    replies: str = "1h"
    retention: str = "30d"


def daemon_config(
    workdir: Path,
    gateway: str,
    teams: int,
    *,
    matching: bool = True,
    tuning: Tuning = Tuning(),
    database: str = "",
) -> str:
    """One rule per team, each alert to its team's contact; the text is the alert's name.

    Rules match alerts only: a delivery report's event carries its alert's labels, and a rule
    on labels alone would page again for every report (with repeat_interval 0s, without end).
    Not `matching`: the rules key on team values no alert has, so a request costs only what
    accepting it does (auth, parsing, the de-duplication record committed, the answer).
    """
    contacts = "\n".join(f'  team{n}: "139{n:08d}"' for n in range(teams))
    team = "t" if matching else "nobody"
    rules = "\n".join(
        f"""  - name: team{n}
    match: {{kind: alert, labels: {{team: {team}{n}}}}}
    sms: {{to: [team{n}], repeat_interval: 0s, group_wait: 0s,
          template: "{{{{ labels.alertname }}}}"}}"""
        for n in range(teams)
    )
    # Polls every hour (unless `tuning` says otherwise): only the one at start runs, so
    # pollers do not take part in the figures.
    where = f'url: "{database}"' if database else f"path: {workdir / 'outbox.sqlite3'}"
    return f"""
server: {{listen: "127.0.0.1:0"}}
store: {{{where}, retention: {tuning.retention}}}
gateway:
  base_url: {gateway}
  account: {DEFAULT_ACCOUNT}
  authkey: {DEFAULT_AUTHKEY}
  rate_limit: null
polling: {{replies: {tuning.replies}, reports: {tuning.reports}, balance: 1h}}
inputs:
  am:
    type: alertmanager
    auth: {{bearer: {TOKEN}}}
contacts:
{contacts}
rules:
{rules}
"""


def write_config(
    workdir: Path,
    gateway: str,
    teams: int,
    *,
    matching: bool = True,
    tuning: Tuning = Tuning(),
    database: str = "",
) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "smsbridge.yaml"
    text = daemon_config(
        workdir, gateway, teams, matching=matching, tuning=tuning, database=database
    )
    config.write_text(text)
    return config


def example_config(workdir: Path, gateway: str) -> Path:
    """config.example.yaml as shipped, with a port of its own, a store here and the gateway."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(EXAMPLE.read_text())
    config["server"]["listen"] = "127.0.0.1:0"
    config["store"]["path"] = str(workdir / "outbox.sqlite3")
    config["gateway"] = {
        "base_url": gateway,
        "account": DEFAULT_ACCOUNT,
        "authkey": DEFAULT_AUTHKEY,
        "rate_limit": None,
    }
    path = workdir / "smsbridge.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


async def start_daemon(
    workdir: Path,
    gateway: str,
    plan: Plan,
    *,
    matching: bool = True,
    tuning: Tuning = Tuning(),
    runner: Sequence[str] = (),
    database: str = "",
) -> Server:
    """`smsbridge run` on the bench config; with `runner` (options of bench/daemon_runner.py)
    the same command run with that runner's hooks; with `database` (a PostgreSQL URL) its
    store is that database, emptied first."""
    if database:
        empty_database(database)
    config = write_config(
        workdir, gateway, plan.teams, matching=matching, tuning=tuning, database=database
    )
    return await run_daemon(config, plan, runner)


def empty_database(url: str) -> None:
    """Drop everything a previous daemon stored: the next one migrates a fresh schema."""
    import psycopg  # only for a PostgreSQL run

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


async def run_daemon(
    config: Path, plan: Plan, runner: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Server:
    command = [sys.executable, RUNNER, *runner] if runner else [SMSBRIDGE, "run"]
    argv = [*command, "-c", str(config)]
    log = config.parent / "daemon.log"
    return await start_server("daemon", argv, log, plan.server_cpus, env)


async def start_bare(workdir: Path, plan: Plan) -> Server:
    argv = [sys.executable, "-c", BARE_SERVER]
    return await start_server("bare", argv, workdir / "bare.log", plan.server_cpus)


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = round(int(value.split()[0]) / 1024, 1)
    return figures


async def idle_cpu_pct(server: Server, seconds: float) -> float:
    """CPU a server uses while nothing is asked of it, in % of one core."""
    before = cpu_seconds(server.pid)
    await asyncio.sleep(seconds)
    return round(100 * (cpu_seconds(server.pid) - before) / seconds, 1)


def machine_busy() -> float:
    """CPU seconds every CPU of the machine spent busy (not idle or waiting for I/O)."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (PostgreSQL: the postmaster and its backends),
    those that ended included (the parent's cutime + cstime, in clock ticks)."""
    total = cpu_seconds(pid)
    for child in children(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it just ended
            total += cpu_seconds(child)
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the command: cutime and cstime are fields 16 and 17 (state is field 3).
    return total + (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def pin_tree(pid: int, cpus: frozenset[int]) -> None:
    """Pin a process, its threads and its children (their threads too) to `cpus`."""
    for process in (pid, *children(pid)):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            pin_threads(process, cpus)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, every live thread included, in ns resolution (schedstat):
    /proc/<pid>/stat counts in 10 ms ticks, too coarse for a round of a fraction of a second."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


# --- payloads and load -------------------------------------------------------------------------


def alert_name(n: int) -> str:
    return f"Bench{n:08d}"


def alert(n: int, teams: int) -> dict[str, Any]:
    """A Kubernetes-style Alertmanager alert of about 1.7 KB as JSON, alert `n` of a run.

    The size and shape of what kube-prometheus sends: a dozen labels, three annotations and a
    long generator URL. The text the rules render is the alert's name.
    """
    pod = f"api-gateway-7f9c{n:08x}-x2k9q"
    return {
        "status": "firing",
        "labels": {
            "alertname": alert_name(n),
            "team": f"t{n % teams}",
            "severity": "page",
            "cluster": "prod-eu-west-1",
            "namespace": "payments",
            "pod": pod,
            "container": "api-gateway",
            "endpoint": "http-metrics",
            "instance": f"10.42.{n % 250}.{n % 251}:8080",
            "job": "kube-state-metrics",
            "prometheus": "monitoring/k8s",
            "service": "kube-prometheus-stack-kube-state-metrics",
            "uid": f"{n:08x}-4c1d-4e5f-9a0b-{n:012x}",
            "node": f"ip-10-0-{n % 200}-{n % 199}.eu-west-1.compute.internal",
            "deployment": "api-gateway",
            "pod_template_hash": f"7f9c{n:08x}",
        },
        "annotations": {
            "summary": f"Pod payments/{pod} has been restarting repeatedly",
            "description": (
                f"Pod payments/{pod} (container api-gateway) is in waiting state (reason:"
                " CrashLoopBackOff) and restarted 7 times within the last 10 minutes. The last"
                " termination was OOMKilled with exit code 137; memory limit 512Mi, request"
                " 256Mi. Check recent deployments, the container's memory profile and the"
                " upstream dependencies before scaling the deployment. The pod serves the"
                " checkout API behind the public ingress; while it restarts, requests are"
                " answered by the two remaining replicas."
            ),
            "runbook_url": (
                "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"
            ),
        },
        "startsAt": "2026-11-25T00:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": (
            "http://prometheus-k8s-0.prometheus-operated.monitoring.svc:9090/graph?g0.expr="
            "max_over_time%28kube_pod_container_status_waiting_reason%7Breason%3D%22"
            "CrashLoopBackOff%22%2Cjob%3D%22kube-state-metrics%22%2Cnamespace%3D%22payments"
            "%22%7D%5B5m%5D%29+%3E%3D+1&g0.tab=1"
        ),
        "fingerprint": f"{n:016x}",
    }


def payload(first: int, count: int, teams: int) -> bytes:
    """An Alertmanager v4 notification of alerts first..first+count-1, each new to the daemon.

    Names and fingerprints never repeat within a run, so no request is taken as a duplicate
    and every alert becomes one job (a duplicate would be cheaper and flatter the daemon).
    """
    body = {
        "version": "4",
        "groupKey": f'{{}}/{{severity="page"}}:{{alertname="{alert_name(first)}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "smsbridge",
        "groupLabels": {"alertname": alert_name(first)},
        "commonLabels": {"severity": "page"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager-main-0.alertmanager-operated.monitoring.svc:9093",
        "alerts": [alert(n, teams) for n in range(first, first + count)],
    }
    return json.dumps(body).encode()


@dataclass(slots=True)
class AlertSource:
    """Hands out bodies of never-used alert numbers."""

    teams: int
    next_alert: int = 0

    def bodies(self, requests: int, per_request: int) -> list[bytes]:
        out = []
        for _ in range(requests):
            out.append(payload(self.next_alert, per_request, self.teams))
            self.next_alert += per_request
        return out


HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


async def blast(url: str, bodies: Sequence[bytes], concurrency: int) -> float:
    """POST every body over `concurrency` keep-alive connections; returns the seconds taken."""
    todo = iter(bodies)  # shared by the workers: each takes the next body when it is free
    failures: list[str] = []

    async def worker(http: aiohttp.ClientSession) -> None:
        for body in todo:
            async with http.post(url, data=body) as response:
                await response.read()
                if response.status != 200:
                    failures.append(f"{response.status} {(await response.text())[:200]}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, first: {failures[0]}")
    return elapsed


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """Min, median and max of a figure's rounds."""
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


async def wait_sent(sim: Simulator, total: int) -> float:
    """Wait until the gateway has `total` messages (so a round leaves no sending behind)."""
    started = time.perf_counter()
    await sim.state.wait_for(lambda s: len(s.messages) >= total, timeout=DRAIN_TIMEOUT)
    return time.perf_counter() - started


# --- 1. server CPU per request, with wrk ------------------------------------------------------


def payload_template(teams: int) -> str:
    """`payload` of one alert with holes wrkload's Lua fills per request (@N@, @X@, @T@):
    the name, fingerprint, pod and team differ in every request, as `payload`'s do."""
    body = json.loads(payload(0, 1, teams))
    name = "Bench@N@"
    body["groupKey"] = f'{{}}/{{severity="page"}}:{{alertname="{name}"}}'
    body["groupLabels"] = {"alertname": name}
    item = body["alerts"][0]
    pod = "api-gateway-7f9c@X@-x2k9q"
    item["labels"].update(alertname=name, team="t@T@", pod=pod, uid="@X@-4c1d-4e5f-9a0b")
    item["annotations"]["summary"] = f"Pod payments/{pod} has been restarting repeatedly"
    item["fingerprint"] = "@X@"
    return json.dumps(body)


def write_script(workdir: Path, teams: int) -> Path:
    """The wrk script that posts `payload_template`, written into `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "bench.lua"
    script.write_text(wrkload.lua_script(payload_template(teams), HEADERS, teams))
    return script


def inbox_rows(path: Path, database: str = "") -> int:
    """Deliveries the daemon stored so far (the inbox's ids are never reused)."""
    return count_rows("SELECT coalesce(max(id), 0) FROM inbox", path, database)


def unprocessed(path: Path, database: str = "") -> int:
    """Inbox rows not yet processed."""
    return count_rows("SELECT count(*) FROM inbox WHERE processed_at IS NULL", path, database)


def count_rows(query: str, path: Path, database: str = "", params: Sequence[Any] = ()) -> int:
    """The one number `query` answers, from the store opened read-only (or the database)."""
    if database:
        import psycopg

        with psycopg.connect(database) as pg:
            row = pg.execute(query.replace("?", "%s"), params).fetchone()
            return int(row[0]) if row else 0
    with read_only(path) as conn:
        return int(conn.execute(query, params).fetchone()[0])


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """The daemon's SQLite store opened read-only beside it, closed afterwards."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


@dataclass(slots=True)
class Side:
    """A server measured by server CPU per request: how it counts what it served, and what
    work a round leaves behind that counts in its cost (the sending, for the full path)."""

    name: str
    server: Server
    store: Path | None = None  # the daemon's store: requests served are its new inbox rows
    sim: Simulator | None = None  # full path: the round ends once every alert was sent
    database: str = ""  # the daemon's store is this PostgreSQL database, not `store`
    database_pid: int = 0  # its postmaster: the cluster's CPU is counted apart
    cpu_us: list[float] = field(default_factory=list)
    database_us: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    server_pct: list[float] = field(default_factory=list)
    others_pct: list[float] = field(default_factory=list)
    settle_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "server_cpu_us_per_request": spread(self.cpu_us, 1),
            "rounds_server_cpu_us_per_request": [round(c) for c in self.cpu_us],
            "req_per_s": spread(self.rps, 0),
            "server_cpu_pct": spread(self.server_pct, 0),
            "rounds_other_load_pct": [round(o) for o in self.others_pct],
            **({"settle_after_round_s": [round(s, 2) for s in self.settle_s]} if self.sim else {}),
            **(
                {
                    "database_cpu_us_per_request": spread(self.database_us, 1),
                    "rounds_database_cpu_us_per_request": [round(c) for c in self.database_us],
                }
                if self.database_us
                else {}
            ),
        }


async def wrk_round(
    side: Side, script: Path, source: AlertSource, load: wrkload.Load, *, record: bool = True
) -> None:
    """One wrk run against a side; with `record`, its figures are added to the side's."""
    url = f"{side.server.url}/hooks/am"
    count_before = await count_served(side)
    sent_before = len(side.sim.state.messages) if side.sim else 0
    busy_before, wrk_before = machine_busy(), children_cpu()
    database_before = tree_cpu_seconds(side.database_pid) if side.database_pid else 0.0
    cpu_before = wrkload.process_cpu(side.server.pid)
    started = time.perf_counter()
    figures = await wrkload.run_wrk(url, script, source.next_alert, load)
    elapsed = time.perf_counter() - started
    server_cpu = wrkload.process_cpu(side.server.pid) - cpu_before
    database_cpu = tree_cpu_seconds(side.database_pid) - database_before if side.database_pid else 0
    others = (
        machine_busy() - busy_before - server_cpu - database_cpu - (children_cpu() - wrk_before)
    )
    # A connection wrk closed at the end may have had a request in the handler: leave a gap.
    source.next_alert += figures["requests"] + 10 * load.connections
    served = figures["requests"]
    if side.store is not None:
        served = await count_served(side) - count_before
    if side.sim is not None:
        settle_started = time.perf_counter()
        await wait_sent(side.sim, sent_before + served)
        side.settle_s.append(time.perf_counter() - settle_started) if record else None
    if not record:
        return
    side.cpu_us.append(1e6 * (wrkload.process_cpu(side.server.pid) - cpu_before) / served)
    if side.database_pid:
        # After the settling: the full path's sending writes to the database too.
        database_cpu = tree_cpu_seconds(side.database_pid) - database_before
        side.database_us.append(1e6 * database_cpu / served)
    side.rps.append(served / elapsed)
    side.server_pct.append(100 * server_cpu / elapsed)
    side.others_pct.append(100 * max(others, 0.0) / elapsed)


async def count_served(side: Side) -> int:
    """The side's inbox rows so far (0 for the bare handler, which has no store)."""
    if side.store is None:
        return 0
    return await asyncio.to_thread(inbox_rows, side.store, side.database)


def children_cpu() -> float:
    """CPU seconds of this process's finished children (wrk, once it exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def cpu_ratios(
    workdir: Path, sim: Simulator, bare: Server, source: AlertSource, plan: Plan
) -> dict[str, Any]:
    """Server CPU per request of the accept path and of the full path, against bare aiohttp.

    Three servers run side by side: the bare handler; a daemon whose processor is held
    (bench/daemon_runner.py --hold-processor), so a request costs exactly what answering it does
    (auth, parsing, de-duplication, the inbox commit, the answer); and a daemon whose rules send
    every alert as an SMS, whose rounds end once the gateway has every one (the sending's CPU
    counts, its time does not). Each round measures all three in turn, the order rotating, the
    two not measured SIGSTOPped; ratios are taken within a round, then min / median / max.
    """
    load = wrkload.Load(plan.wrk_seconds, plan.concurrency, plan.client_cpus)
    script = write_script(workdir, plan.teams)
    accept_db, full_db = plan.databases or ("", "")
    accept = await start_daemon(
        workdir / "accept",
        sim.url,
        plan,
        matching=False,
        runner=["--hold-processor"],
        database=accept_db,
    )
    full = await start_daemon(workdir / "full", sim.url, plan, database=full_db)
    if plan.database_pid and plan.server_cpus is not None:
        # The backends the daemons opened are the postmaster's children: on the servers' side.
        pin_tree(plan.database_pid, plan.server_cpus)
    servers = (bare, accept, full)
    pid = plan.database_pid
    sides = [
        Side("bare", bare),
        Side("accept", accept, workdir / "accept" / "outbox.sqlite3", None, accept_db, pid),
        Side("full", full, workdir / "full" / "outbox.sqlite3", sim, full_db, pid),
    ]
    warm = dataclasses.replace(load, seconds=1)
    try:
        for side in sides:  # untimed: connections open, caches fill, the JIT of wrk's Lua warms
            with contextlib.ExitStack() as stack:
                for other in servers:
                    if other is not side.server:
                        stack.enter_context(other.paused())
                await wrk_round(side, script, source, warm, record=False)
        for round_ in range(plan.rounds):
            order = sides[round_ % 3 :] + sides[: round_ % 3]
            if round_ % 2:
                order.reverse()
            for side in order:
                with contextlib.ExitStack() as stack:
                    for other in servers:
                        if other is not side.server:
                            stack.enter_context(other.paused())
                    await wrk_round(side, script, source, load)
        rss = {"accept": proc_status(accept.pid), "full": proc_status(full.pid)}
    finally:
        await accept.stop()
        await full.stop()
    return {
        "wrk": {"seconds": load.seconds, "connections": load.connections, "threads": 1},
        "rounds": plan.rounds,
        "store": "postgresql" if plan.databases else "sqlite",
        "accept_only": ratios(sides[0], sides[1], 0.4 if plan.databases else 0.6),
        "full_path": ratios(sides[0], sides[2], 0.33),
        **{side.name: side.summary() for side in sides},
        "daemon_rss_after_mb": rss,
    }


def ratios(bare: Side, daemon: Side, target: float) -> dict[str, Any]:
    """Bare CPU per request over the daemon's, round by round (the daemon process alone; with
    a PostgreSQL store, also with the database's CPU added), and how far the rounds spread."""
    by_round = [b / d for b, d in zip(bare.cpu_us, daemon.cpu_us, strict=True)]
    figures: dict[str, Any] = {"cpu_ratio": spread(by_round), "target": target}
    if len(by_round) > 1:
        # The noise: the rounds' range as a share of their median.
        figures["spread_pct"] = round(
            100 * (max(by_round) - min(by_round)) / statistics.median(by_round)
        )
    if daemon.database_us:
        with_database = [
            b / (d + p)
            for b, d, p in zip(bare.cpu_us, daemon.cpu_us, daemon.database_us, strict=True)
        ]
        figures["cpu_ratio_with_database"] = spread(with_database)
    return figures


def held_jobs(path: Path) -> int:
    """Jobs held after a -9 (for a top-up), read from the outbox opened read-only."""
    # Refused once for the balance: nothing more happens to them for minutes.
    query = "SELECT count(*) FROM jobs WHERE state = 'pending' AND code IN (?, ?)"
    return count_rows(query, path, params=HOLDS)


# --- 2. latency --------------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 2),
        "p90": round(cuts[89], 2),
        "p99": round(cuts[98], 2),
        "max": round(ordered[-1], 2),
    }


async def latency(workdir: Path, source: AlertSource, plan: Plan, bare: Server) -> dict[str, Any]:
    """Open loop: alerts leave on a fixed schedule whatever the answers, so a slow answer
    cannot hide the ones queued behind it. The bare server takes the same schedule first:
    its answer times are the floor this machine and client set."""
    rate, seconds = plan.latency_rate, plan.latency_seconds
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as http:
        url = f"{bare.url}/hooks/am"
        await _schedule(http, url, source, rate, 1.0)  # unmeasured: connections open
        _, bare_acks, _ = await _schedule(http, url, source, rate, seconds)
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=Decimal(10**9)),), rate_limit=None, report_delay=3600
    )
    async with Simulator(settings) as sim:
        daemon = await start_daemon(workdir, sim.url, plan)
        try:
            url = f"{daemon.url}/hooks/am"
            connector = aiohttp.TCPConnector(limit=64)
            async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as http:
                with bare.paused():
                    # One second at the rate first, unmeasured: connections open, caches fill.
                    warm, _, _ = await _schedule(http, url, source, rate, 1.0)
                    await wait_sent(sim, len(warm))
                    first = len(sim.state.messages)
                    cpu_before = cpu_seconds(daemon.pid)
                    posted, acks, slips = await _schedule(http, url, source, rate, seconds)
                    await wait_sent(sim, first + len(posted))
                    cpu = cpu_seconds(daemon.pid) - cpu_before
        finally:
            await daemon.stop()
        gateway_at = {m.content: m.submitted_at.timestamp() for m in sim.state.messages[first:]}
    missing = set(posted) - set(gateway_at)
    if missing:
        raise RuntimeError(f"{len(missing)} alerts never reached the gateway")
    delays = [1000 * (gateway_at[name] - at) for name, at in posted.items()]
    return {
        "alerts": len(posted),
        "rate_per_s": rate,
        "webhook_to_gateway_ms": percentiles(delays),
        "webhook_answer_ms": percentiles([ms for _, ms in acks]),
        "bare_answer_ms": percentiles([ms for _, ms in bare_acks]),
        "schedule_slip_ms_max": round(max(slips), 2),
        "daemon_cpu_pct": round(100 * cpu / seconds),
        "note": "the simulator shares the bench process with the load generator",
    }


def reported(path: Path) -> int:
    """Jobs a delivery report was recorded for, read from the store opened read-only."""
    return count_rows("SELECT count(*) FROM jobs WHERE delivery != ''", path)


async def report_burst(
    workdir: Path, source: AlertSource, plan: Plan, bare: Server
) -> dict[str, Any]:
    """Webhook answers at the latency rate while one getSendState hands out a burst of reports.

    The daemon sends `burst_reports` messages first; the gateway reports each an hour later
    (report_delay). The simulator's clock is then moved an hour on, so the daemon's next
    report poll (every second here) gets every report in one answer, as finding 2 of issue 9
    saw. Answers are timed from that moment until the last report is recorded in the store.
    """
    shift = [timedelta(0)]
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=Decimal(10**9)),), rate_limit=None, report_delay=3600
    )
    rate, reports = plan.latency_rate, plan.burst_reports
    async with Simulator(settings, clock=lambda: utcnow() + shift[0]) as sim:
        daemon = await start_daemon(workdir, sim.url, plan, tuning=Tuning(reports="1s"))
        path = workdir / "outbox.sqlite3"
        try:
            url = f"{daemon.url}/hooks/am"
            with bare.paused():
                await blast(url, source.bodies(reports // PENDING_ALERTS, PENDING_ALERTS), 8)
                await wait_sent(sim, reports)

                async def release() -> tuple[float, float]:
                    await asyncio.sleep(1.0)
                    shift[0] = timedelta(seconds=settings.report_delay)
                    released = time.time()
                    while await asyncio.to_thread(reported, path) < reports:
                        if time.time() - released > DRAIN_TIMEOUT:
                            raise RuntimeError("the reports were not recorded")
                        await asyncio.sleep(0.05)
                    return released, time.time()

                connector = aiohttp.TCPConnector(limit=64)
                async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as http:
                    await _schedule(http, url, source, rate, 1.0)  # unmeasured: warm
                    releasing = asyncio.create_task(release())
                    _, acks, slips = await _schedule(http, url, source, rate, plan.burst_seconds)
                    released, recorded = await releasing
        finally:
            await daemon.stop()
    during = [ms for sent, ms in acks if released <= sent <= recorded]
    return {
        "reports": reports,
        "rate_per_s": rate,
        "recorded_in_s": round(recorded - released, 2),
        "webhooks_during_burst": len(during),
        "answer_ms_during_burst": percentiles(during) if len(during) > 1 else None,
        "answer_ms_whole_schedule": percentiles([ms for _, ms in acks]),
        "schedule_slip_ms_max": round(max(slips), 2),
        "window_cut_by_schedule_end": recorded > released + plan.burst_seconds,
    }


async def _schedule(
    http: aiohttp.ClientSession, url: str, source: AlertSource, rate: float, seconds: float
) -> tuple[dict[str, float], list[tuple[float, float]], list[float]]:
    """POST one-alert webhooks at `rate` for `seconds`; returns send times by alert name,
    (send time, answer ms) of each and how late each send left (ms)."""
    count = round(rate * seconds)
    first = source.next_alert
    bodies = source.bodies(count, 1)
    posted: dict[str, float] = {}
    acks: list[tuple[float, float]] = []
    slips: list[float] = []
    failures: list[int] = []

    async def post(name: str, body: bytes) -> None:
        sent = time.time()
        posted[name] = sent
        async with http.post(url, data=body) as response:
            await response.read()
            if response.status != 200:
                failures.append(response.status)
        acks.append((sent, 1000 * (time.time() - sent)))

    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks = []
    for i, body in enumerate(bodies):
        due = start + i / rate
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        slips.append(1000 * max(loop.time() - due, 0.0))
        tasks.append(asyncio.create_task(post(alert_name(first + i), body)))
    await asyncio.gather(*tasks)
    if failures:
        raise RuntimeError(f"{len(failures)} webhooks failed, first status {failures[0]}")
    return posted, acks, slips


# --- 3. memory ---------------------------------------------------------------------------------


async def example_rss(
    workdir: Path, gateway: str, plan: Plan, env: Mapping[str, str] | None = None
) -> dict[str, float]:
    """VmRSS of config.example.yaml's daemon (without its console) once it has started."""
    config = example_config(workdir, gateway)
    text = yaml.safe_load(config.read_text())
    del text["console"]  # the figure is the daemon's; the console is an optional part
    config.write_text(yaml.safe_dump(text, allow_unicode=True))
    example = await run_daemon(config, plan, env=env)
    try:
        await asyncio.sleep(1.5)  # the start-up polls are answered; nothing else runs
        return proc_status(example.pid)
    finally:
        await example.stop()


async def memory(workdir: Path, source: AlertSource, plan: Plan) -> dict[str, Any]:
    """RSS idle after start, and with the outbox full of jobs the gateway refuses (-9)."""
    # A zero balance makes every send -9: the jobs are held (pending) for a top-up, not sent.
    settings = SimulatorSettings(
        accounts=(SimAccount(balance=Decimal(0)),), rate_limit=None, report_delay=3600
    )
    total = plan.pending_requests * PENDING_ALERTS
    sys.path.insert(0, str(EXAMPLE.parent))  # the tests' reading of the shipped unit file
    from tests.unit_file import unit_environment

    async with Simulator(settings) as sim:
        example_idle = await example_rss(workdir / "example", sim.url, plan)
        # As the systemd unit runs it: with the unit's Environment= (python -OO).
        unit_idle = await example_rss(workdir / "unit", sim.url, plan, unit_environment())
        daemon = await start_daemon(workdir, sim.url, plan)
        try:
            await asyncio.sleep(1.0)
            idle_cpu = await idle_cpu_pct(daemon, IDLE_SECONDS)
            idle = proc_status(daemon.pid)
            bodies = source.bodies(plan.pending_requests, PENDING_ALERTS)
            # Fewer connections than for the rates: each body is 100 alerts, and only the
            # end state is measured here.
            elapsed = await blast(f"{daemon.url}/hooks/am", bodies, 8)
            path = workdir / "outbox.sqlite3"
            started = time.perf_counter()
            while (held := await asyncio.to_thread(held_jobs, path)) < total:
                if time.perf_counter() - started > DRAIN_TIMEOUT:
                    raise RuntimeError(f"only {held} of {total} jobs held after {DRAIN_TIMEOUT}s")
                await asyncio.sleep(0.5)
            settle = time.perf_counter() - started
            full = proc_status(daemon.pid)
        finally:
            await daemon.stop()
    return {
        "example_idle_mb": example_idle["VmRSS"],
        "example_unit_idle_mb": unit_idle["VmRSS"],
        "daemon_idle_mb": idle["VmRSS"],
        "daemon_idle_cpu_pct": idle_cpu,
        "pending_jobs": total,
        "daemon_pending_mb": full["VmRSS"],
        "daemon_peak_mb": full["VmHWM"],
        "fill_alerts_per_s": round(total / elapsed),
        "all_held_after_fill_s": round(settle, 1),
    }


# --- main --------------------------------------------------------------------------------------


async def main(plan: Plan) -> dict[str, Any]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    source = AlertSource(plan.teams)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        settings = SimulatorSettings(
            accounts=(SimAccount(balance=Decimal(10**9)),), rate_limit=None, report_delay=3600
        )
        bare = await start_bare(work, plan)
        try:
            # Read before it serves anything, as the daemon's is.
            bare_idle = proc_status(bare.pid)["VmRSS"]
            bare_idle_cpu = await idle_cpu_pct(bare, IDLE_SECONDS)
            async with Simulator(settings) as sim:
                result: dict[str, Any] = {
                    "cpu": await cpu_ratios(work / "cpu", sim, bare, source, plan)
                }
            result["latency"] = await latency(work / "latency", source, plan, bare)
            result["latency"]["target_ms"] = {"p50": 5, "p99": 25}
            result["burst"] = await report_burst(work / "burst", source, plan, bare)
            result["burst"]["target_p99_ms"] = 100
            result["rss"] = await memory(work / "memory", source, plan)
            result["rss"]["bare_idle_mb"] = bare_idle
            result["rss"]["bare_idle_cpu_pct"] = bare_idle_cpu
            result["rss"]["target_mb"] = {"idle": 60, "pending_100k": 150}
        finally:
            await bare.stop()
    result["setup"] = {
        "cpus": os.cpu_count(),
        "bench_cpus": sorted(os.sched_getaffinity(0)),
        "server_cpus": sorted(plan.server_cpus) if plan.server_cpus else "any",
        "concurrency": plan.concurrency,
        "rounds": plan.rounds,
        "teams": plan.teams,
        "python": sys.version.split()[0],
    }
    return result


def table(result: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    cpu = result["cpu"]
    for name, label in (("accept_only", "accept path"), ("full_path", "full path")):
        ratio = cpu[name]["cpu_ratio"]
        rows.append(
            (
                f"server CPU ratio to bare, {label}",
                f"min {ratio['min']} / median {ratio['median']} / max {ratio['max']}",
                f"≥ {cpu[name]['target']}x",
            )
        )
    for name in ("bare", "accept", "full"):
        part = cpu[name]
        us, rps = part["server_cpu_us_per_request"], part["req_per_s"]
        rows.append(
            (
                f"  {name}: server cpu µs per request",
                f"median {us['median']} (rounds {part['rounds_server_cpu_us_per_request']});"
                f" req/s median {rps['median']}; other load % {part['rounds_other_load_pct']}",
                "",
            )
        )
    lat = result["latency"]
    gw, ack = lat["webhook_to_gateway_ms"], lat["webhook_answer_ms"]
    rows.append(
        (
            f"webhook → gateway ms @ {lat['rate_per_s']:g}/s",
            f"p50 {gw['p50']}  p90 {gw['p90']}  p99 {gw['p99']}  max {gw['max']}",
            "",
        )
    )
    for label, figures, target in (
        ("  daemon answered", ack, "p99 ≤ 25"),
        ("  bare answered", lat["bare_answer_ms"], ""),
    ):
        rows.append(
            (
                f"{label} ms",
                f"p50 {figures['p50']}  p90 {figures['p90']}  p99 {figures['p99']}"
                f"  max {figures['max']}",
                target,
            )
        )
    burst = result["burst"]
    during = burst["answer_ms_during_burst"] or {"p50": "-", "p99": "-", "max": "-"}
    rows.append(
        (
            f"answered ms during {burst['reports']} reports",
            f"p50 {during['p50']}  p99 {during['p99']}  max {during['max']}"
            f" ({burst['webhooks_during_burst']} webhooks; recorded in"
            f" {burst['recorded_in_s']} s)",
            "p99 ≤ 100",
        )
    )
    rss = result["rss"]
    rows.append(
        (
            "RSS idle MB",
            f"example config {rss['example_idle_mb']} (as the unit runs it"
            f" {rss['example_unit_idle_mb']}), bench config {rss['daemon_idle_mb']},"
            f" bare {rss['bare_idle_mb']}",
            "≤ 60",
        )
    )
    rows.append(
        (
            f"RSS with {rss['pending_jobs']} pending MB",
            f"{rss['daemon_pending_mb']} (peak {rss['daemon_peak_mb']})",
            "",
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}" for row in rows]
    setup = result["setup"]
    lines.append(
        f"note: {lat['note']}; {setup['cpus']} CPUs, bench on {setup['bench_cpus']},"
        f" servers on {setup['server_cpus']}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the kernel place processes (default: this process on the first CPU, servers "
        "on the others)",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    cpus = sorted(os.sched_getaffinity(0))
    if not args.no_pin and len(cpus) >= 2:
        # One core for the client and simulator, the same other core(s) for either server:
        # neither side can borrow the client's core, and the client never shares theirs.
        os.sched_setaffinity(0, {cpus[0]})
        plan = dataclasses.replace(
            plan, server_cpus=frozenset(cpus[1:]), client_cpus=frozenset(cpus[:1])
        )
    result = asyncio.run(main(plan))
    print(json.dumps(result, indent=2) if args.json else table(result))
