"""The pytest plugin for smsbridge and its adapters: simulator, running daemon, capture, helpers.

Fixtures: `simulator` (a started c123 simulator), `smsbridge_daemon` (starts real daemons from
YAML), `capture_output` (an output that records jobs), `loop_thread` / `threaded_simulator` for
sync tests. Helpers: `post_json(daemon, path, body, headers)`, `RecordingSubmit` and
`input_app(plugin)` to try an input alone. Installed as the pytest11 entry point `smsbridge`, so
adapter packages get them by installing smsbridge; see docs/writing-a-plugin.md.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import pytest
import pytest_asyncio
import structlog
import yaml
from aiohttp import web
from multidict import CIMultiDict

from bridge.config import ConfigModel
from bridge.events import Event
from bridge.plugin import (
    Accepted,
    Delivery,
    Input,
    Job,
    Outcome,
    OutcomeKind,
    Output,
    Parsed,
    PluginContext,
    Registry,
    StoreUnavailableError,
)
from bridge.plugins.c123.simulator import Simulator, SimulatorSettings
from bridge.runtime import Daemon, load_settings

T = TypeVar("T")


class LoopThread:
    """An event loop running in a thread, so sync code (hypothesis, the CLI) can await on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, factory: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
        async def wrapped() -> T:
            return await factory()

        future: Future[T] = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        return future.result(timeout=timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """Each test starts from structlog's defaults: a command run in one test (which configures
    logging for a terminal or a file) must not filter or redirect the next test's events."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="module")
def module_loop_thread() -> Iterator[LoopThread]:
    """One background loop shared by a module's tests (hypothesis reruns a test many times)."""
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def threaded_simulator(loop_thread: LoopThread) -> Iterator[Simulator]:
    """A simulator (reports due at once, no rate limit) served from a background loop."""
    simulator = Simulator(SimulatorSettings(report_delay=0, rate_limit=None))
    loop_thread.run(simulator.start)
    yield simulator
    loop_thread.run(simulator.stop)


class CaptureConfig(ConfigModel):
    """A capturing output takes no options."""


class CapturingOutput(Output[CaptureConfig]):
    """An output that records every job and answers with scripted outcomes (default: sent).

    `script` is consumed one OutcomeKind per delivered job; when it runs out, jobs are sent.
    """

    type_name = "capture"
    config_class = CaptureConfig

    def __init__(self, name: str = "capture", script: Iterable[OutcomeKind] = ()) -> None:
        # A capturing output never makes HTTP calls, so it needs no session.
        ctx = PluginContext(name=name, http=None, log=structlog.get_logger())  # type: ignore[arg-type]
        super().__init__(CaptureConfig(), ctx)
        self.delivered: list[Job] = []
        self.batches: list[int] = []
        self.script = list(script)
        self.changed = asyncio.Event()

    def split(self, jobs: Sequence[Job]) -> list[list[Job]]:
        return [list(jobs)]  # like a gateway that takes a whole batch in one call

    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        self.delivered.extend(jobs)
        self.batches.append(len(jobs))
        outcomes = []
        for job in jobs:
            kind = self.script.pop(0) if self.script else OutcomeKind.SENT
            outcomes.append(
                Outcome(
                    job.id,
                    kind,
                    reason=f"scripted {kind.value}",
                    ref=f"ref-{job.id}",
                    segments=1,
                    code="scripted",
                    retry_after=0.0,
                )
            )
        self.changed.set()
        return outcomes

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a deadline, like asyncio.wait_for
        """Return once at least `count` jobs were delivered."""
        async with asyncio.timeout(timeout):
            while len(self.delivered) < count:
                self.changed.clear()
                await self.changed.wait()


# --- fixtures for adapter authors --------------------------------------------------------------


@dataclass
class RecordingSubmit:
    """A `submit` for an input under test: keeps each delivery, or fails, or reports a duplicate.

    When it knows the input's `parse` (serve_input tells it), it also checks the contract a
    replay relies on: parsing the stored body again gives the same events.
    """

    calls: list[tuple[list[Event], str, float]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    fail: bool = False  # raise StoreUnavailableError, as when the store is down
    error: BaseException | None = None  # or raise this (say, a bug in the core)
    duplicate: bool = False  # answer as for a delivery seen before
    parse: Callable[[bytes], Parsed] | None = None

    async def __call__(self, delivery: Delivery) -> Accepted:
        if self.error is not None:
            raise self.error
        if self.fail:
            raise StoreUnavailableError("database is locked")
        events = list(delivery.parsed.events)
        if self.parse is not None:
            replayed = self.parse(delivery.body)
            assert _comparable(replayed.events) == _comparable(events), (
                "parse(stored body) does not give the events the input submitted"
            )
        self.deliveries.append(delivery)
        self.calls.append((events, delivery.dedupe_key, delivery.dedupe_window))
        return Accepted(len(events), duplicate=self.duplicate, rejected=delivery.parsed.rejected)

    @property
    def events(self) -> list[Event]:
        """The events of the last call."""
        return self.calls[-1][0]

    @property
    def key(self) -> str:
        """The dedupe key of the last call."""
        return self.calls[-1][1]


def _comparable(events: Sequence[Event]) -> list[dict[str, Any]]:
    return [{**event.to_json(), "received_at": None} for event in events]


def input_app(plugin: Input[Any]) -> web.Application:
    """An aiohttp app serving `plugin`'s routes under /hooks/<its instance name>."""
    app = web.Application()
    for route in plugin.routes():
        app.router.add_route(route.method, f"/hooks/{plugin.ctx.name}{route.path}", route.handler)
    return app


@pytest_asyncio.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session for adapters under test (the daemon hands them its shared one)."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def recorder() -> RecordingSubmit:
    """The submit an input under test is given by `serve_input`: it keeps what it receives."""
    return RecordingSubmit()


ServeInput = Callable[[type[Input[Any]], str, Mapping[str, Any]], Awaitable[Any]]


@pytest.fixture
def serve_input(
    aiohttp_client: Any, http_session: aiohttp.ClientSession, recorder: RecordingSubmit
) -> ServeInput:
    """Build an input from a config mapping, serve it at /hooks/<name>, return a test client.

    Its `submit` is the `recorder` fixture, so a test sees exactly what the input handed on,
    and every delivery is checked to parse back to the same events from its stored body.
    """

    async def serve(cls: type[Input[Any]], name: str, config: Mapping[str, Any]) -> Any:
        ctx = PluginContext(
            name=name, http=http_session, log=structlog.get_logger(), submit=recorder
        )
        plugin = cls(cls.config_class.model_validate(dict(config)), ctx)
        recorder.parse = plugin.parse
        return await aiohttp_client(input_app(plugin))

    return serve


def quick_simulator_settings() -> SimulatorSettings:
    """Settings for a simulator in tests: delivery reports due at once, no rate limit."""
    return SimulatorSettings(report_delay=0, rate_limit=None)


@pytest_asyncio.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """A started c123 simulator on 127.0.0.1 (port 0): reports due at once, no rate limit."""
    started = Simulator(quick_simulator_settings())
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
def capture_output() -> CapturingOutput:
    """A CapturingOutput; in a `smsbridge_daemon` config, outputs of `type: capture` feed it."""
    return CapturingOutput()


def capture_type(target: CapturingOutput) -> type[Output[Any]]:
    """An output type whose instances hand every job to `target` (type name `capture`)."""

    class Capture(Output[CaptureConfig]):
        type_name = "capture"
        config_class = CaptureConfig

        def split(self, jobs: Sequence[Job]) -> list[list[Job]]:
            return target.split(jobs)

        async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
            return await target.deliver(jobs)

    return Capture


@dataclass(frozen=True, slots=True)
class RegistryWithTypes(Registry):
    """The installed adapter types, plus classes given directly (not yet behind entry points)."""

    extra_inputs: Mapping[str, type[Input[Any]]] = field(default_factory=dict)
    extra_outputs: Mapping[str, type[Output[Any]]] = field(default_factory=dict)

    @classmethod
    def with_types(cls, types: Iterable[type[Input[Any]] | type[Output[Any]]]) -> RegistryWithTypes:
        """Discover the installed types, and add `types` by their `type_name`."""
        found = Registry.discover()
        inputs: dict[str, type[Input[Any]]] = {}
        outputs: dict[str, type[Output[Any]]] = {}
        for plugin in types:
            if issubclass(plugin, Input):
                inputs[plugin.type_name] = plugin
            elif issubclass(plugin, Output):
                outputs[plugin.type_name] = plugin
            else:
                raise TypeError(f"{plugin!r} is neither an Input nor an Output")
        return cls(found.inputs, found.outputs, inputs, outputs)

    def input_type(self, name: str) -> type[Input[Any]]:
        if name in self.extra_inputs:
            return self.extra_inputs[name]
        return Registry.input_type(self, name)

    def output_type(self, name: str) -> type[Output[Any]]:
        if name in self.extra_outputs:
            return self.extra_outputs[name]
        return Registry.output_type(self, name)


def daemon_config(text: str, directory: Path) -> Path:
    """Write `text` as `directory`/config.yaml with test defaults filled in where not given.

    Defaults: `store.path` in `directory` (unless `store.url` is given), `server.listen:
    127.0.0.1:0`, `simulator.port: 0`.
    Without a `gateway:` section the daemon embeds the simulator, as in production. Missing
    sections are appended, so the lines of `text` (and config errors' line numbers) stay as
    written; a section written without one of these keys makes the file a rewritten copy.
    """
    document = yaml.safe_load(text) if text.strip() else {}
    if not isinstance(document, dict):
        raise ValueError("a smsbridge config is a YAML mapping of sections")
    appended: dict[str, dict[str, Any]] = {}
    rewrite = text.lstrip().startswith("{")  # a flow mapping cannot take lines after it
    for section, key, value in (
        ("store", "path", str(directory / "smsbridge.sqlite3")),
        ("server", "listen", "127.0.0.1:0"),
        ("simulator", "port", 0),
    ):
        options = document.get(section)
        if section not in document:
            appended[section] = {key: value}
        elif options is None:
            document[section] = {key: value}
            rewrite = True
        elif isinstance(options, dict) and key not in options:
            if section == "store" and "url" in options:
                continue  # a PostgreSQL store: no file
            options[key] = value
            rewrite = True
    if rewrite:
        text = yaml.safe_dump({**document, **appended}, sort_keys=False, allow_unicode=True)
    elif appended:
        text = text.rstrip("\n") + "\n" + yaml.safe_dump(appended, sort_keys=False)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(text, "utf-8")
    return path


class DaemonFactory(Protocol):
    """`await smsbridge_daemon(config_text, types=..., environ=...)` -> a started Daemon."""

    def __call__(
        self,
        config: str,
        *,
        types: Iterable[type[Input[Any]] | type[Output[Any]]] = (),
        environ: Mapping[str, str] | None = None,
    ) -> Awaitable[Daemon]: ...


@pytest_asyncio.fixture
async def smsbridge_daemon(
    tmp_path: Path, capture_output: CapturingOutput
) -> AsyncIterator[DaemonFactory]:
    """Start real daemons in-process from YAML config text; each is stopped at teardown.

    The config gets a temporary store, `127.0.0.1:0` and (without `gateway:`) the embedded
    simulator with reports due at once (`daemon.simulator`). Adapter types come from entry
    points, from `types=[MyInput, ...]` for classes not registered yet, and `type: capture`
    outputs deliver into the `capture_output` fixture. A bad config raises ConfigError.
    """
    started: list[Daemon] = []
    counter = itertools.count()

    async def start(
        config: str,
        *,
        types: Iterable[type[Input[Any]] | type[Output[Any]]] = (),
        environ: Mapping[str, str] | None = None,
    ) -> Daemon:
        path = daemon_config(config, tmp_path / f"smsbridge-{next(counter)}")
        registry = RegistryWithTypes.with_types([capture_type(capture_output), *types])
        settings = await asyncio.to_thread(load_settings, path, environ=environ, registry=registry)
        daemon = Daemon(settings, simulator_settings=quick_simulator_settings())
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    problems: list[Exception] = []
    for daemon in reversed(started):
        try:
            await daemon.stop()
        except Exception as exc:  # stop the others all the same, then report the first
            problems.append(exc)
    if problems:
        raise problems[0]


async def post_json(
    daemon: Daemon,
    path: str,
    body: Any,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """POST to a running daemon; returns the status and the parsed JSON answer (else its text).

    `body` is sent as compact JSON, or as it is when it is bytes (to sign exact bytes).
    Content-Type is application/json unless `headers` says otherwise.
    """
    data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    sent = CIMultiDict(headers or {})
    sent.setdefault("Content-Type", "application/json")
    async with (
        aiohttp.ClientSession() as http,
        http.post(daemon.url + path, data=data, headers=sent) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text
