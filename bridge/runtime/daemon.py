"""The daemon's lifecycle: start everything in order, stop it in reverse, reload by swapping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from functools import partial
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from aiohttp import web

import bridge.runtime.adapters as adapters
import bridge.runtime.cluster as cluster
import bridge.runtime.configure as configure
import bridge.runtime.gateway as gateway
import bridge.runtime.health as health
import bridge.runtime.loops as loops
import bridge.runtime.memory as memory
import bridge.runtime.reload as reloading
import bridge.runtime.storage as storage
import bridge.runtime.wakeups as wakeups
from bridge.intake import PAGING, STORM, Pipeline, Processor, RecordIntake
from bridge.logging import SCRUBBER
from bridge.metrics import Metrics
from bridge.outbox import JobRecord, retention
from bridge.plugin import Delivery, Input, Output, Parsed, PluginContext
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.marks import StoreMarks
from bridge.plugins.c123.output import C123Output
from bridge.plugins.c123.poller import GatewayPoller
from bridge.runtime.adapters import Adapters
from bridge.runtime.server import HookTable, build_app
from bridge.runtime.settings import SMS_OUTPUT, Settings
from bridge.runtime.supervisor import Backoff, Run, Supervisor
from bridge.store import Dialect, StoreReplay, ledger

if TYPE_CHECKING:
    from bridge.console import ConsoleServer
    from bridge.paging import Silencer
    from bridge.plugins.c123.simulator import Simulator, SimulatorSettings

EXPIRE_TASK = "expire"
POLL_TASKS = ("poll-replies", "poll-reports", "poll-balance")


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
        self.console: ConsoleServer | None = None
        self.silencer: Silencer | None = None  # made when a config first pages
        self.port = 0
        self._stack = AsyncExitStack()
        self._storm_wake = asyncio.Event()
        self._paging_wake = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._inputs: dict[str, Input[Any]] = {}
        self._outputs: dict[str, Output[Any]] = {}
        self.commits_reported = 0
        self.wakeups: wakeups.Wakeups | None = None  # set once the instances hear each other

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
        """Each phase needs what the ones before it opened; the stack unwinds them in reverse."""
        c123 = await self._open_store_and_gateway()
        self._build_outbox(c123)
        await self._start_sending()
        self._build_intake()
        await self._join_cluster()
        await self._open_doors()

    async def _open_store_and_gateway(self) -> C123Config:
        """The store, the HTTP session, the gateway (or the simulator), the instance's cluster
        membership and the gateway client."""
        config = self.settings.config
        stack = self._stack
        self.store = await storage.open_store(config.store, self._stack, str(self.clock()))
        self.replay = StoreReplay(self.store, self.clock)
        # Last before the store closes: whatever is still supervised stops (bounded).
        stack.push_async_callback(self._stop_tasks, None)
        self.session = await stack.enter_async_context(aiohttp.ClientSession())
        c123, self.simulator = await gateway.open_gateway(
            self.settings, self.simulator_settings, stack, self.log
        )
        self.cluster = cluster.Cluster(
            self.store,
            account=c123.account,
            poll_every=config.polling.replies.total_seconds(),
            listen=config.server.listen,
            log=self.log,
            take_over=self._take_over,
            on_poll_gained=self._poll_now,
        )
        self.metrics.instance_info.labels(self.cluster.identity.id).set(1)
        self.client = C123Client(
            c123,
            self.session,
            log=self.log,
            observe=partial(gateway.observe, self.metrics),
            marks=StoreMarks(self.store),
            on_pause=lambda pause: gateway.report_pause(
                pause,
                metrics=self.metrics,
                account=c123.account,
                run_events=self.processor.run_events,
            ),
            on_resume=lambda: gateway.release_after_pause(self.metrics, self.dispatcher),
            limiter=cluster.shared_limiter(self.store, c123),
        )
        configure.register_settings_secrets(self.settings)
        SCRUBBER.add_secret(c123.load_key().get_secret_value())
        return c123

    def _build_outbox(self, c123: C123Config) -> None:
        """The rules' pipeline, silences, and the processor that runs the rules."""
        stack = self._stack
        self.pipeline = Pipeline(
            self.store,
            self.settings.rules,
            sms_outputs={SMS_OUTPUT: partial(gateway.segments, c123)},
            metrics=self.metrics,
            log=self.log,
            storm=configure.storm_settings(self.settings),
            clock=self.clock,
            wake=self._wake,
            price=c123.segment_price,
        )
        # Before the session closes, after the processor stopped: silences under way finish.
        stack.push_async_callback(self._drain_silences)
        self._route(self.settings)
        # Made now, run later: the gateway's pause hook raises its events through it as soon
        # as the account is watched.
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
        self.processor.chatops = configure.chatops(
            self.settings, partial(gateway.balance, self.client)
        )

    async def _start_sending(self) -> None:
        """The outputs, and the dispatcher that sends through them."""
        stack = self._stack
        self._outputs = await self._start_outputs(self.settings)
        self.dispatcher = configure.dispatcher(
            self.settings,
            self.store,
            self._outputs,
            metrics=self.metrics,
            log=self.log,
            clock=self.clock,
            on_failed=self._on_failed,
            spawn=self._spawn_worker,
            instance=self.cluster.identity.id,
        )
        if self.store.dialect is Dialect.SQLITE:
            # This daemon holds the file alone: whatever was left 'sending' is from one that
            # died. (On PostgreSQL the heartbeat takes over what dead instances claimed.)
            await self.dispatcher.recover()
        self.client.gate.may_probe = lambda: self.cluster.poll.held
        await stack.enter_async_context(self.client.gate.watching())
        self.dispatcher.start()
        stack.push_async_callback(self._stop_dispatch)

    def _build_intake(self) -> None:
        """The wake-ups between instances, and the gateway's poller."""
        config = self.settings.config
        stack = self._stack
        self.records.stored = self._inbox_news
        self.wakeups = wakeups.start(
            self.store,
            self.supervisor,
            stack,
            inbox=self.processor.wake,
            jobs=self.dispatcher.wake,
            stop=self._stop_tasks,
        )
        if self.wakeups is not None:
            self.dispatcher.recorded = self.wakeups.changed  # sent, failed, held: pages show it
        self.poller = GatewayPoller(
            self.client,
            SMS_OUTPUT,
            self.records,
            log=self.log,
            low_balance=config.polling.low_balance,
            on_poll=self._polled,
            lease=self.cluster.poll,
        )

    async def _join_cluster(self) -> None:
        """Fence the writes that need a lease, join the instances, and lead what this one may."""
        stack = self._stack
        # Answers are kept only under the account's lease; batches and timers only under the
        # processor's: a paused ex-leader's late write fails its fence instead of committing.
        self.records.fences[SMS_OUTPUT] = self.cluster.poll.fence
        self.processor.fence = fence = self.cluster.processor.fence
        await self.cluster.join()
        stack.push_async_callback(self.cluster.leave)
        self.cluster.start(self.supervisor)
        stack.push_async_callback(self._stop_tasks, cluster.TASKS)
        if self.cluster.poll.held:
            await self._replay_raw_polls()
        loops.start_leading(
            self.supervisor,
            self.cluster.leading,
            self.processor.run,
            partial(loops.storm_loop, self.pipeline, self.store, self.clock, self._storm_wake),
            partial(
                loops.paging_loop,
                self.pipeline,
                self.store,
                self.clock,
                self._paging_wake,
                self.log,
            ),
            fence,
        )
        stack.push_async_callback(self._stop_tasks, list(loops.LEADING_TASKS))

    async def _open_doors(self) -> None:
        """Inputs, the HTTP server, the console, the clock's jobs: only now can work come in."""
        config = self.settings.config
        stack = self._stack
        self._inputs = await adapters.start_inputs(self.settings, self._context, self.log)
        stack.push_async_callback(lambda: adapters.stop(self._inputs, self.log))
        self.hooks.install(self._inputs)
        await self._serve()
        await self.cluster.serving(f"{config.server.host}:{self.port}")
        # Stopped before the webhook site: open live pages end first on SIGTERM.
        if self.settings.config.console is not None:
            await self._start_console(stack)
        self._schedule()
        self.metrics.reload_success.set(1)
        self.metrics.reload_time.set(self.clock())
        memory.return_startup_memory()
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

    async def _start_outputs(self, settings: Settings) -> dict[str, Output[Any]]:
        sms = C123Output(self.client.config, self._context(SMS_OUTPUT, "c123"), self.client)
        return await adapters.start_outputs(settings, sms, self._context, self.log)

    async def _submit(self, name: str, delivery: Delivery) -> Any:
        accepted = await self.processor.submit(name, delivery)
        if not accepted.duplicate and self.wakeups is not None:
            self.wakeups.inbox()  # the processor leader may be another instance
        return accepted

    def _inbox_news(self) -> None:
        """Polled records were stored: the processor (here or elsewhere) should look."""
        self.processor.wake()
        if self.wakeups is not None:
            self.wakeups.inbox()

    def _parser(self, name: str) -> Callable[[bytes], Parsed] | None:
        """The parse of the input instance called `name` now (a reload may have removed it)."""
        plugin = self._inputs.get(name)
        return None if plugin is None else plugin.parse

    def _polled(self, action: str) -> None:
        self.metrics.last_poll.labels(action).set(self.clock())

    def _poll_now(self) -> None:
        """This instance just became the account's poller: poll at once, not a period later."""
        for name in POLL_TASKS:
            self.supervisor.trigger(name)

    async def _take_over(self, dead: list[str]) -> int:
        """Settle the jobs instances that died had claimed (their calls may have gone out)."""
        taken = await self.dispatcher.recover(owners=dead)
        if taken:
            self.dispatcher.wake(self._outputs)  # retries are due within seconds
        return taken

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

    async def _start_console(self, stack: AsyncExitStack) -> None:
        # Imported only when configured: the console's pages and queries are memory an idle
        # daemon without one does not need.
        from bridge.runtime.consoles import start_console

        self.console = await start_console(
            lambda: self.settings,
            stack,
            store=self.store,
            pipeline=self.pipeline,
            metrics=self.metrics,
            clock=self.clock,
            log=self.log,
            simulator=self.simulator.state if self.simulator is not None else None,
            poll_replies=self.poller.poll_replies,
            changes=self.wakeups,
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
            trusted_proxies=server.trusted_proxies,
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
        polling = self.settings.config.polling
        replies, reports, balance = POLL_TASKS
        periodic: tuple[loops.Periodic, ...] = (
            (replies, self.poller.poll_replies, polling.replies.total_seconds(), True),
            (reports, self.poller.poll_reports, polling.reports.total_seconds(), True),
            (balance, self.poller.poll_balance, polling.balance.total_seconds(), True),
            (EXPIRE_TASK, self._expire, 3600.0, False),
        )
        loops.schedule(self.supervisor, periodic, self._stack, self._stop_tasks)

    async def _stop_tasks(self, names: list[str] | None) -> None:
        grace = self.settings.config.server.shutdown_timeout.total_seconds()
        await self.supervisor.stop(names, grace=grace)

    def _spawn_worker(self, output: str, worker: Run) -> asyncio.Task[None]:
        async def run() -> None:
            # A worker that failed may have left the jobs it claimed 'sending': settle them.
            await self.dispatcher.recover(output, owners=[self.cluster.identity.id])
            await worker()

        return self.supervisor.start(f"dispatch-{output}", run)

    async def _stop_dispatch(self) -> None:
        await self.dispatcher.stop(self.settings.config.server.shutdown_timeout.total_seconds())
        await adapters.stop(self._outputs, self.log)

    # --- running ---------------------------------------------------------------------------

    def _route(self, settings: Settings) -> None:
        if settings.config.oncall is not None and self.silencer is None:
            # Paging is an optional part: a config without `oncall` never loads it.
            from bridge.paging import Silencer

            self.silencer = Silencer(self.store, self.session, self.pipeline, self.log, self.clock)
        configure.route(self.pipeline, settings, self.silencer)

    async def _drain_silences(self) -> None:
        if self.silencer is not None:
            await self.silencer.drain()

    def _wake(self, touched: Iterable[str]) -> None:
        names = set(touched)
        self.dispatcher.wake(names)
        if self.wakeups is not None:
            self.wakeups.changed()  # a batch committed: console pages on every instance refresh
            if names & self._outputs.keys():
                self.wakeups.jobs(names & self._outputs.keys())  # senders on every instance
        if STORM in names:
            self._storm_wake.set()
        if PAGING in names:
            self._paging_wake.set()

    async def _expire(self) -> None:
        if not self.cluster.processor.held:
            return  # the processor leader prunes for every instance
        keep = self.settings.config.store.retention.total_seconds()
        policy = retention.RetentionPolicy(keep=keep, keep_record_keys=KEEP_RECORD_KEYS)
        await retention.prune(self.store, self.clock(), policy, log=self.log)

    def _on_failed(self, record: JobRecord, reason: str) -> None:
        self.log.error("delivery_gave_up", output=record.output, job=record.id, reason=reason)

    # --- reload ------------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Load and build the new config first, then swap; a bad one keeps the old running."""
        async with self._reload_lock:
            return await reloading.reload(
                self.settings,
                start=self._start_adapters,
                swap=self._swap,
                stop_replaced=self._stop_replaced,
                metrics=self.metrics,
                log=self.log,
                clock=self.clock,
            )

    async def _start_adapters(self, settings: Settings) -> Adapters:
        outputs = await self._start_outputs(settings)
        try:
            inputs = await adapters.start_inputs(settings, self._context, self.log)
        except BaseException:
            # The old adapters stay; the new outputs go again (not the SMS output: it shares
            # the gateway client with the one in use).
            new = {k: v for k, v in outputs.items() if k != SMS_OUTPUT}
            await adapters.stop(new, self.log)
            raise
        return Adapters(inputs, outputs)

    async def _swap(self, settings: Settings, new: Adapters) -> Adapters:
        """Route by the new config and its adapters; returns the adapters they replace."""
        replaced = Adapters(self._inputs, self._outputs)
        self._route(settings)
        self._wake({PAGING})  # the new config's handoff timers are set by the paging loop
        self.processor.chatops = configure.chatops(settings, partial(gateway.balance, self.client))
        self._inputs, self._outputs = new.inputs, new.outputs
        self.hooks.install(new.inputs)
        await self.dispatcher.replace_outputs(new.outputs)
        self.settings = settings
        return replaced

    async def _stop_replaced(self, replaced: Adapters) -> None:
        await adapters.stop(replaced.inputs, self.log)
        # The old SMS output is not stopped: it shares the gateway client with its replacement.
        others = {k: v for k, v in replaced.outputs.items() if k != SMS_OUTPUT}
        await adapters.stop(others, self.log)
