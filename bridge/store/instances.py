"""The daemons that use the store: each registers itself and keeps a heartbeat.

An instance whose heartbeat ran out (by the database's clock) is taken to be dead: the jobs it
had claimed are taken over by another. Functions here run inside a Store.write()/read() call.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.store.connection import Connection, Row
from bridge.store.fragments import now_sql


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One instance as the store knows it; `alive` by the database's clock."""

    id: str
    host: str
    pid: int
    listen: str
    started_at: float
    seen_at: float
    expires_at: float
    stopped_at: float | None
    alive: bool

    @classmethod
    def of(cls, row: Row) -> InstanceRow:
        stopped = row["stopped_at"]
        return cls(
            str(row["id"]),
            str(row["host"]),
            int(row["pid"]),
            str(row["listen"]),
            float(row["started_at"]),
            float(row["seen_at"]),
            float(row["expires_at"]),
            None if stopped is None else float(stopped),
            bool(row["alive"]),
        )


def register(conn: Connection, instance: str, host: str, pid: int, listen: str, ttl: float) -> None:
    """Record an instance that starts, alive for `ttl` seconds unless it beats again."""
    now = now_sql(conn)
    conn.execute(
        f"""INSERT INTO instances (id, host, pid, listen, started_at, seen_at, expires_at)
            VALUES (?, ?, ?, ?, {now}, {now}, {now} + ?)
            ON CONFLICT (id) DO UPDATE SET listen = excluded.listen,
                seen_at = excluded.seen_at, expires_at = excluded.expires_at,
                stopped_at = NULL""",  # noqa: S608 - the interpolated text is our clock expression
        (instance, host, pid, listen, ttl),
    )


def beat(conn: Connection, instance: str, ttl: float) -> bool:
    """Keep an instance alive for `ttl` more seconds; False when it is not registered."""
    now = now_sql(conn)
    cursor = conn.execute(
        f"UPDATE instances SET seen_at = {now}, expires_at = {now} + ? WHERE id = ?",  # noqa: S608
        (ttl, instance),
    )
    return cursor.rowcount == 1


def stopped(conn: Connection, instance: str) -> None:
    """A clean stop: the instance claims nothing any more."""
    now = now_sql(conn)
    conn.execute(
        f"UPDATE instances SET stopped_at = {now}, expires_at = {now} WHERE id = ?",  # noqa: S608
        (instance,),
    )


def dead(conn: Connection, keep: str) -> list[str]:
    """Instances (other than `keep`) whose heartbeat ran out: their claims are anyone's."""
    rows = conn.execute(
        f"SELECT id FROM instances WHERE id != ? AND expires_at <= {now_sql(conn)}",  # noqa: S608
        (keep,),
    ).fetchall()
    return [str(row["id"]) for row in rows]


def listing(conn: Connection) -> list[InstanceRow]:
    """Every instance recorded, newest first."""
    rows = conn.execute(
        f"""SELECT *, CASE WHEN expires_at > {now_sql(conn)} THEN 1 ELSE 0 END AS alive
            FROM instances ORDER BY started_at DESC"""  # noqa: S608
    ).fetchall()
    return [InstanceRow.of(row) for row in rows]


def forget(conn: Connection, after: float) -> int:
    """Drop instances stopped or dead for more than `after` seconds (their claims were taken
    over long ago): `status` shows the recent ones, and the dead list stays short."""
    cursor = conn.execute(
        f"DELETE FROM instances WHERE expires_at < {now_sql(conn)} - ?",  # noqa: S608
        (after,),
    )
    return cursor.rowcount
