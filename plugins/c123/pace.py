"""The account's rate limit shared by every instance on one database.

Each call reserves the next slot of the account's schedule in the store (the generic cell rate
algorithm: one row per account holding its theoretical arrival time, by the database's clock),
then waits for it. Instances thus share one rate, bursts included, without talking to each
other; a lone daemon on SQLite keeps its limiter in memory instead (nothing else calls).
"""

from __future__ import annotations

import asyncio
from functools import partial

from bridge.store import Connection, Store
from bridge.store.fragments import now_sql


def reserve(conn: Connection, account: str, interval: float, tolerance: float) -> float:
    """Take the account's next slot; returns how many seconds to wait for it (0: go now).

    `interval` is the time one call uses up (1 / rate); `tolerance` how far ahead of its
    schedule a burst may run ((burst - 1) * interval).
    """
    now = now_sql(conn)
    row = conn.execute(
        f"""INSERT INTO gateway_pace (account, tat) VALUES (?, {now} + ?)
            ON CONFLICT (account) DO UPDATE SET
                tat = CASE WHEN gateway_pace.tat > excluded.tat - ? THEN gateway_pace.tat + ?
                           ELSE excluded.tat END
            RETURNING tat, {now} AS now""",  # noqa: S608 - the interpolated text is our clock
        (account, interval, interval, interval),
    ).fetchone()
    # The slot starts one interval before the new arrival time, `tolerance` earlier in a burst.
    return max(float(row["tat"]) - interval - tolerance - float(row["now"]), 0.0)


class SharedLimiter:
    """Waits until the account's shared schedule lets a call go."""

    def __init__(self, store: Store, account: str, rate: float, burst: int = 1) -> None:
        self.store = store
        self.account = account
        self.interval = 1.0 / rate
        self.tolerance = max(burst - 1, 0) * self.interval

    async def acquire(self) -> None:
        wait = await self.store.write(
            partial(
                reserve,
                account=self.account,
                interval=self.interval,
                tolerance=self.tolerance,
            )
        )
        if wait > 0:
            await asyncio.sleep(wait)
