"""The daemon's lifecycle: start everything in order, stop it in reverse, reload by swapping."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import sqlite3
import time
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

import bridge.runtime.health as health
from bridge.config import ConfigError
from bridge.events import Conversation, Event, EventKind
from bridge.intake import (
    PAGING,
    STORM,
    ChatOps,
    ConversationSettings,
    Pipeline,
    Processor,
    RecordIntake,
    StormSettings,
    storm,
)
from bridge.logging import SCRUBBER, register_secrets
from bridge.metrics import Metrics
from bridge.outbox import Dispatcher, JobRecord, RetryPolicy, retention
from bridge.paging import OncallConfig, Pager, timers
from bridge.plugin import (
    ChatInputConfig,
    Delivery,
    Input,
    Output,
    Parsed,
    PluginContext,
    StoreUnavailableError,
)
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.marks import Pause, StoreMarks
from bridge.plugins.c123.models import Action
from bridge.plugins.c123.output import C123Output
from bridge.plugins.c123.poller import GatewayPoller
from bridge.rules import Directory
from bridge.runtime.server import HookTable, build_app
from bridge.runtime.settings import SMS_OUTPUT, Settings, load_settings
from bridge.runtime.supervisor import Backoff, Run, Supervisor
from bridge.sms import segment_count
from bridge.store import Store, StoreOpenError, StoreReplay, ledger

if TYPE_CHECKING:
    from bridge.plugins.c123.simulator import Simulator, SimulatorSettings

STORM_TASK = "storm"
PAGING_TASK = "paging"
PROCESSOR_TASK = "processor"
EXPIRE_TASK = "expire"


# Keys of polled records are kept this long, in case the gateway hands a record out again.
KEEP_RECORD_KEYS = 7 * 86400.0


class Daemon:
    """smsbridge running: server, outbox, workers, pollers. Never touches signals or env."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        simulator_settings: SimulatorSettings | None = None,
        log: Any = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.simulator_settings = simulator_settings
        self.log = log if log is not None else structlog.get_logger("smsbridge")
        self.metrics = Metrics()
        self.supervisor = Supervisor(
            log=self.log, restarts=self.metrics.task_restarts, backoff=backoff
        )
        self.hooks = HookTable()
        self.simulator: Simulator | None = None
        self.port = 0
        self._stack = AsyncExitStack()
        self._storm_wake = asyncio.Event()
        self._paging_wake = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._inputs: dict[str, Input[Any]] = {}
        self._outputs: dict[str, Output[Any]] = {}
        self.commits_reported = 0

    @property
    def inputs(self) -> dict[str, Input[Any]]:
        """The running inputs by instance name."""
        return self._inputs

    @property
    def outputs(self) -> dict[str, Output[Any]]:
        """The running outputs by instance name."""
        return self._outputs

    @property
    def url(self) -> str:
        return f"http://{self.settings.config.server.host}:{self.port}"

    # --- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start in dependency order; a failure unwinds exactly what had started."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        config = self.settings.config
        stack = self._stack
        await self._open_store()
        self.replay = StoreReplay(self.store, self.clock)
        # Last before the store closes: whatever is still supervised stops (bounded).
        stack.push_async_callback(self._stop_tasks, None)
        self.session = await stack.enter_async_context(aiohttp.ClientSession())
        gateway = await self._gateway(config.gateway)
        self.client = C123Client(
            gateway,
            self.session,
            log=self.log,
            observe=self._observe,
            marks=StoreMarks(self.store),
            on_pause=self._on_pause,
            on_resume=self._on_resume,
        )
        register_secrets(_secret_holders(self.settings))
        SCRUBBER.add_secret(gateway.load_key().get_secret_value())
        self.pipeline = Pipeline(
            self.store,
            self.settings.rules,
            sms_outputs={SMS_OUTPUT: self._estimate},
            metrics=self.metrics,
            log=self.log,
            storm=self._storm_settings(),
            clock=self.clock,
            wake=self._wake,
            price=gateway.segment_price,
        )
        self._route_with(self.settings)
        self._outputs = await self._start_outputs(self.settings)
        self.dispatcher = Dispatcher(
            self.store,
            self._outputs,
            metrics=self.metrics,
            log=self.log,
            clock=self.clock,
            batch_size=config.dispatch.batch_size,
            concurrency=config.dispatch.concurrency,
            retry=RetryPolicy(
                ceiling=config.dispatch.backoff_max.total_seconds(),
                max_attempts=config.dispatch.max_attempts,
                max_hold=config.dispatch.max_hold.total_seconds(),
            ),
            on_failed=self._on_failed,
            spawn=self._spawn_worker,
        )
        await self.dispatcher.recover()
        await stack.enter_async_context(self.client.gate.watching())
        self.dispatcher.start()
        stack.push_async_callback(self._stop_dispatch)
        self.records = RecordIntake(
            self.store, self.pipeline, metrics=self.metrics, clock=self.clock
        )
        self.processor = Processor(
            self.store,
            self.pipeline,
            self.records,
            parser=self._parser,
            metrics=self.metrics,
            log=self.log,
            clock=self.clock,
        )
        self.processor.chatops = self._chatops(self.settings)
        self.records.stored = self.processor.wake
        self.poller = GatewayPoller(
            self.client,
            SMS_OUTPUT,
            self.records,
            log=self.log,
            low_balance=config.polling.low_balance,
            on_poll=self._polled,
        )
        await self._replay_raw_polls()
        self.supervisor.start(PROCESSOR_TASK, self.processor.run)
        self.supervisor.start(STORM_TASK, self._storm_loop)
        self.supervisor.start(PAGING_TASK, self._paging_loop)
        stack.push_async_callback(self._stop_tasks, [PAGING_TASK, STORM_TASK, PROCESSOR_TASK])
        self._inputs = await self._start_inputs(self.settings)
        stack.push_async_callback(self._stop_adapters, lambda: self._inputs)
        self.hooks.install(self._inputs)
        await self._serve()
        self._schedule()
        self.metrics.reload_success.set(1)
        self.metrics.reload_time.set(self.clock())
        _return_startup_memory()
        self.log.info(
            "daemon_started",
            url=self.url,
            inputs=sorted(self._inputs),
            outputs=sorted(self._outputs),
            rules=len(self.settings.rules.names),
        )

    async def stop(self) -> None:
        """Stop accepting, let sends under way finish (bounded), close everything; loses nothing."""
        await self._stack.aclose()
        self.log.info("daemon_stopped")

    async def _open_store(self) -> None:
        """Open the store and commit once: a store that cannot be written fails the start."""
        path = self.settings.config.store.path
        self.store = Store(path)
        self._stack.push_async_callback(self.store.close)
        started = str(self.clock())
        try:
            await self.store.open()
            # A real write and commit, so a read-only or full disk shows now, not at the first
            # webhook; the value tells an operator when the daemon last started.
            await self.store.write(
                lambda conn: ledger.put_setting(conn, "daemon.started_at", started)
            )
        except (OSError, sqlite3.Error, StoreUnavailableError) as exc:
            raise StoreOpenError(path, exc) from exc

    async def _gateway(self, gateway: C123Config | None) -> C123Config:
        if gateway is not None:
            return gateway
        options = self.settings.config.simulator
        # Imported only when needed: a daemon on a real gateway does not carry the simulator.
        from bridge.plugins.c123.connect import embedded_simulator
        from bridge.plugins.c123.simulator import SimulatorSettings

        settings = self.simulator_settings or SimulatorSettings(
            report_delay=options.report_delay.total_seconds()
        )
        simulator, sim_config = await self._stack.enter_async_context(
            embedded_simulator(settings, options.port)
        )
        self.simulator = simulator
        self.log.warning(
            "gateway_simulator_embedded",
            url=simulator.url,
            reason="no gateway configured: SMS go to a built-in simulator, not to phones",
        )
        return sim_config

    async def _start_outputs(self, settings: Settings) -> dict[str, Output[Any]]:
        outputs: dict[str, Output[Any]] = {
            SMS_OUTPUT: C123Output(
                self.client.config, self._context(SMS_OUTPUT, "c123"), self.client
            )
        }
        for name, (cls, options) in settings.outputs.items():
            plugin = cls(options, self._context(name, cls.type_name))
            await plugin.start()
            outputs[name] = plugin
        return outputs

    async def _start_inputs(self, settings: Settings) -> dict[str, Input[Any]]:
        inputs: dict[str, Input[Any]] = {}
        for name, (cls, options) in settings.inputs.items():
            plugin = cls(options, self._context(name, cls.type_name))
            await plugin.start()
            inputs[name] = plugin
        return inputs

    async def _submit(self, name: str, delivery: Delivery) -> Any:
        return await self.processor.submit(name, delivery)

    def _parser(self, name: str) -> Callable[[bytes], Parsed] | None:
        """The parse of the input instance called `name` now (a reload may have removed it)."""
        plugin = self._inputs.get(name)
        return None if plugin is None else plugin.parse

    def _polled(self, action: str) -> None:
        self.metrics.last_poll.labels(action).set(self.clock())

    async def _replay_raw_polls(self) -> None:
        """Hand over poll answers an earlier version stored but did not process."""
        for raw_id, _, action, body in await self.store.read(ledger.unprocessed_raw):
            await self.poller.replay(action, body)
            now = self.clock()
            await self.store.write(partial(ledger.mark_processed, raw_id=raw_id, now=now))

    def _context(self, name: str, type_name: str) -> PluginContext:
        return PluginContext(
            name=name,
            http=self.session,
            log=self.log.bind(plugin=type_name, instance=name),
            submit=partial(self._submit, name),
            replay=self.replay,
        )

    async def _serve(self) -> None:
        server = self.settings.config.server
        read_timeout = server.read_timeout.total_seconds()
        app = build_app(
            self.hooks,
            self.metrics,
            partial(health.readiness, self),
            max_body=server.max_body,
            read_timeout=read_timeout,
            log=self.log,
            before_scrape=partial(health.refresh_gauges, self),
        )
        runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=server.shutdown_timeout.total_seconds(),
            # Armed when a connection opens and after each answer: a request head that is not
            # complete within it (slowloris), or an idle connection, is closed (aiohttp 3.14.4+).
            keepalive_timeout=read_timeout,
        )
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, server.host, server.port)
        await site.start()
        self.port = int(runner.addresses[0][1]) if runner.addresses else server.port
        # Stop taking requests first of all when stopping; the stack unwinds in reverse.
        self._stack.push_async_callback(site.stop)

    def _schedule(self) -> None:
        """APScheduler is the clock: its jobs only trigger; the work runs supervised."""
        polling = self.settings.config.polling
        periodic: tuple[tuple[str, Run, float], ...] = (
            ("poll-replies", self.poller.poll_replies, polling.replies.total_seconds()),
            ("poll-reports", self.poller.poll_reports, polling.reports.total_seconds()),
            ("poll-balance", self.poller.poll_balance, polling.balance.total_seconds()),
            (EXPIRE_TASK, self._expire, 3600.0),
        )
        scheduler = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        for name, work, every in periodic:
            self.supervisor.start_triggered(name, work)
            first = _soon() if name != EXPIRE_TASK else None
            scheduler.add_job(
                self._trigger, "interval", args=[name], seconds=every, next_run_time=first
            )
        scheduler.start()
        self._stack.push_async_callback(
            self._stop_scheduler, scheduler, [name for name, _, _ in periodic]
        )

    async def _trigger(self, name: str) -> None:
        # A coroutine, so APScheduler runs it on the loop (a plain function goes to a thread).
        self.supervisor.trigger(name)

    async def _stop_scheduler(self, scheduler: AsyncIOScheduler, names: list[str]) -> None:
        scheduler.pause()
        # A poll under way has stored its raw answer first, but let it finish processing.
        await self._stop_tasks(names)
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)

    async def _stop_tasks(self, names: list[str] | None) -> None:
        grace = self.settings.config.server.shutdown_timeout.total_seconds()
        await self.supervisor.stop(names, grace=grace)

    def _spawn_worker(self, output: str, worker: Run) -> asyncio.Task[None]:
        async def run() -> None:
            # A worker that failed may have left the jobs it claimed 'sending': settle them.
            await self.dispatcher.recover(output)
            await worker()

        return self.supervisor.start(f"dispatch-{output}", run)

    async def _stop_dispatch(self) -> None:
        await self.dispatcher.stop(self.settings.config.server.shutdown_timeout.total_seconds())
        await self._stop_adapters(lambda: self._outputs)

    async def _stop_adapters(self, current: Callable[[], dict[str, Any]]) -> None:
        for name, plugin in reversed(list(current().items())):
            try:
                await plugin.stop()
            except Exception:
                self.log.exception("adapter_stop_failed", instance=name)

    # --- running ---------------------------------------------------------------------------

    def _estimate(self, output: str, text: str) -> int:
        return segment_count(text, self.client.config.signature.text)

    def _wake(self, touched: Iterable[str]) -> None:
        names = set(touched)
        self.dispatcher.wake(names)
        if STORM in names:
            self._storm_wake.set()
        if PAGING in names:
            self._paging_wake.set()

    def _observe(self, action: Action, outcome: str, seconds: float) -> None:
        self.metrics.gateway_duration.labels(action.value, outcome).observe(seconds)

    def _storm_settings(self) -> StormSettings:
        config = self.settings.config
        return StormSettings(
            held_summary_after=config.storm.held_summary_after.total_seconds(),
            daily_segment_budget=config.storm.daily_segment_budget,
            budget_zone=self.settings.timezone,
        )

    def _route_with(self, settings: Settings) -> None:
        """Give the pipeline the rules, contacts and reply routing of a config."""
        config = settings.config
        directory = Directory(config.contacts, config.groups)
        default = config.conversations.default
        self.pipeline.rules = settings.rules
        self.pipeline.directory = directory
        # Incidents under way keep their stored timeline; only what comes next sees this config.
        self.pipeline.paging = (
            Pager(self.pipeline, config.oncall, directory, SMS_OUTPUT)
            if config.oncall is not None
            else None
        )
        self.pipeline.conversations = ConversationSettings(
            ttl=config.conversations.ttl.total_seconds(),
            reply_codes=config.conversations.reply_codes,
            default=Conversation(default.output, default.channel, default.thread)
            if default
            else None,
            report_deliveries=config.conversations.report_deliveries,
        )

    def _chatops(self, settings: Settings) -> ChatOps:
        """Chat commands with the contacts and per-input command policies of a config."""
        config = settings.config
        policies = {
            name: options.commands
            for name, (_, options) in settings.inputs.items()
            if isinstance(options, ChatInputConfig)
        }
        return ChatOps(Directory(config.contacts, config.groups), policies, self._balance)

    async def _balance(self) -> Decimal:
        return (await self.client.get_balance()).remain

    async def _storm_loop(self) -> None:
        """Flush grouped alerts and held-back summaries when they come due."""
        while True:
            # Cleared first, so a wake-up that comes during the flush is not lost. Only storm
            # state wakes this loop (STORM), not every send, so it cannot wake itself in a spin.
            self._storm_wake.clear()
            await storm.flush_due(self.pipeline)  # a failure is the supervisor's: logged, restarted
            due = await self.store.read(partial(storm.next_due, self.pipeline))
            timeout = None if due is None else max(due - self.clock(), 0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._storm_wake.wait(), timeout)

    async def _paging_loop(self) -> None:
        """Fire escalation timers when they come due: next steps, report and ack timeouts."""
        while True:
            self._paging_wake.clear()  # first, so a wake-up during the firing is not lost
            if await self._fire_paging_timers():
                continue  # a full batch may leave more due
            due = await self.store.read(timers.next_due)
            timeout = None if due is None else max(due - self.clock(), 0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._paging_wake.wait(), timeout)

    async def _fire_paging_timers(self) -> bool:
        """One transaction of due timers; True when it was a full batch."""
        now = self.clock()
        touched: set[str] = set()
        # Without `oncall` (dropped by a reload) timers still fire, and find nobody new to page.
        pager = self.pipeline.paging
        if not isinstance(pager, Pager):
            pager = Pager(self.pipeline, OncallConfig(), self.pipeline.directory, SMS_OUTPUT)

        def work(conn: sqlite3.Connection) -> bool:
            touched.clear()
            return pager.fire_due(conn, now, touched)

        try:
            full = await self.store.write(work)
        except BaseException:
            self.pipeline.notes.clear()
            raise
        self.pipeline.flush_log(self.log)
        touched.discard(PAGING)  # its own timers are read again below: no self wake-up
        self.pipeline.wake(touched)
        return full

    async def _expire(self) -> None:
        keep = self.settings.config.store.retention.total_seconds()
        policy = retention.RetentionPolicy(keep=keep, keep_record_keys=KEEP_RECORD_KEYS)
        await retention.prune(self.store, self.clock(), policy, log=self.log)

    async def _on_pause(self, pause: Pause) -> None:
        """The gateway account takes no calls: SMS are held; a system event tells operators."""
        self.metrics.account_paused.clear()
        self.metrics.account_paused.labels(pause.reason).set(1)
        account = self.client.config.account
        event = Event(
            kind=EventKind.SYSTEM,
            source=SMS_OUTPUT,
            labels={"alertname": "SmsAccountPaused", "account": account, "reason": pause.reason},
            text=f"SMS account paused ({pause.reason}): {pause.detail}; messages are held",
            data={"reason": pause.reason, "detail": pause.detail},
            fingerprint=f"account-paused|{account}|{pause.reason}",
        )
        await self.processor.run_events([event])

    async def _on_resume(self) -> None:
        self.metrics.account_paused.clear()
        await self.dispatcher.release_held(SMS_OUTPUT)

    def _on_failed(self, record: JobRecord, reason: str) -> None:
        self.log.error("delivery_gave_up", output=record.output, job=record.id, reason=reason)

    # --- reload ------------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Load and build the new config first, then swap; a bad one keeps the old running."""
        async with self._reload_lock:
            path = self.settings.path
            try:
                settings = await asyncio.to_thread(load_settings, path)
            except ConfigError as exc:
                self.metrics.reload_success.set(0)
                self.log.error("reload_failed", problems=[i.render() for i in exc.issues])
                return False
            try:
                outputs = await self._start_outputs(settings)
                inputs = await self._start_inputs(settings)
            except Exception:
                self.metrics.reload_success.set(0)
                self.log.exception("reload_failed", reason="an adapter failed to start")
                return False
            register_secrets(_secret_holders(settings))
            old_inputs, old_outputs = self._inputs, self._outputs
            self._route_with(settings)
            self.processor.chatops = self._chatops(settings)
            self._inputs, self._outputs = inputs, outputs
            self.hooks.install(inputs)
            await self.dispatcher.replace_outputs(outputs)
            unchanged = ("server", "store", "gateway", "polling")
            changed = [
                s
                for s in unchanged
                if getattr(settings.config, s) != getattr(self.settings.config, s)
            ]
            self.settings = settings
            await self._stop_adapters(lambda: old_inputs)
            await self._stop_adapters(
                lambda: {k: v for k, v in old_outputs.items() if k != SMS_OUTPUT}
            )
            if changed:
                self.log.warning(
                    "restart_required",
                    sections=changed,
                    reason="these sections take effect on restart",
                )
            self.metrics.reload_success.set(1)
            self.metrics.reload_time.set(self.clock())
            self.log.info(
                "reload_done",
                inputs=sorted(inputs),
                outputs=sorted(outputs),
                rules=len(settings.rules.names),
            )
            return True


def _soon() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _secret_holders(settings: Settings) -> list[object]:
    return [settings.config, *settings.inputs.values(), *settings.outputs.values()]


def _return_startup_memory() -> None:
    """Hand back to the OS what loading the config and building models used and freed.

    glibc keeps freed heap pages; on a small host a daemon that idles for weeks should not.
    """
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(libc_name).malloc_trim(0)
