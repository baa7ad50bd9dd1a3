"""This daemon as one of several on a database: its identity, its heartbeat, and claims it
takes over from instances that died."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bridge.store import Store, instances

# An instance that has not beaten for this long is taken to be dead: its claimed jobs go to
# others. Beats come every third of it.
HEARTBEAT_TTL = 15.0
# Instances stopped or dead this long are forgotten (their claims were settled long before).
FORGET_AFTER = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this daemon is among the instances: host, process, and a random part, so a pid
    reused after a restart is never mistaken for the instance that died."""

    id: str
    host: str
    pid: int

    @classmethod
    def new(cls) -> Identity:
        host = socket.gethostname() or "localhost"
        pid = os.getpid()
        return cls(f"{host}:{pid}:{secrets.token_hex(3)}", host, pid)


class Heartbeat:
    """Registers the instance and keeps it alive; after each beat, takes over dead ones' claims."""

    def __init__(
        self,
        store: Store,
        identity: Identity,
        listen: str,
        *,
        log: Any,
        take_over: Callable[[list[str]], Awaitable[int]],
        ttl: float = HEARTBEAT_TTL,
    ) -> None:
        self.store = store
        self.identity = identity
        self.listen = listen
        self.log = log
        self.take_over = take_over
        self.ttl = ttl

    async def register(self) -> None:
        ident = self.identity
        await self.store.write(
            partial(
                instances.register,
                instance=ident.id,
                host=ident.host,
                pid=ident.pid,
                listen=self.listen,
                ttl=self.ttl,
            )
        )

    async def run(self) -> None:
        """Beat every third of the period; a failure raises (the supervisor restarts it)."""
        while True:
            await self.beat()
            await asyncio.sleep(self.ttl / 3)

    async def beat(self) -> int:
        """One heartbeat, then take over what dead instances claimed; returns how many jobs."""
        if not await self.store.write(
            partial(instances.beat, instance=self.identity.id, ttl=self.ttl)
        ):
            await self.register()  # retention dropped it while the host slept
        dead = await self.store.read(partial(instances.dead, keep=self.identity.id))
        taken = await self.take_over(dead) if dead else 0
        if dead:
            await self.store.write(partial(instances.forget, after=FORGET_AFTER))
        return taken

    async def stopped(self) -> None:
        await self.store.write(partial(instances.stopped, instance=self.identity.id))
