"""Named leases with fencing tokens, by the database's clock: one holder at a time per name.

A lease (the poller of one gateway account, the processor) is held by one instance until it
runs out. Whoever takes it over gets the next token: tokens only grow, so a write that checks
its token (`fence`) in its own transaction can never commit after another holder took over,
however long its writer was paused. Functions here run inside a Store.write()/read() call.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.plugin import StoreUnavailableError
from bridge.store.connection import Connection, Row
from bridge.store.fragments import now_sql, share_lock


class LeaseLostError(StoreUnavailableError):
    """Another holder took the lease over: the write that checked it must not commit.

    A kind of StoreUnavailableError: for this instance the store refuses the write, so the
    work that made it stops instead of settling anything as failed."""


@dataclass(frozen=True, slots=True)
class Lease:
    """One lease as the database has it."""

    name: str
    holder: str
    token: int
    acquired_at: float
    renewed_at: float
    expires_at: float

    @classmethod
    def of(cls, row: Row) -> Lease:
        return cls(
            str(row["name"]),
            str(row["holder"]),
            int(row["token"]),
            float(row["acquired_at"]),
            float(row["renewed_at"]),
            float(row["expires_at"]),
        )


def acquire(conn: Connection, name: str, holder: str, ttl: float) -> Lease | None:
    """Take or renew `name` for `ttl` seconds; None while another holder's lease runs.

    A holder that renews keeps its token (nobody else held the lease meanwhile: that would have
    changed the holder); a new holder gets the next token.
    """
    now = now_sql(conn)
    row = conn.execute(
        f"""INSERT INTO leases (name, holder, token, acquired_at, renewed_at, expires_at)
            VALUES (?, ?, 1, {now}, {now}, {now} + ?)
            ON CONFLICT (name) DO UPDATE SET
                token = CASE WHEN leases.holder = excluded.holder THEN leases.token
                             ELSE leases.token + 1 END,
                acquired_at = CASE WHEN leases.holder = excluded.holder
                                   AND leases.expires_at > excluded.renewed_at
                                   THEN leases.acquired_at ELSE excluded.acquired_at END,
                holder = excluded.holder,
                renewed_at = excluded.renewed_at,
                expires_at = excluded.expires_at
            WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.renewed_at
            RETURNING *""",  # noqa: S608 - the interpolated text is our own clock expression
        (name, holder, ttl),
    ).fetchone()
    return None if row is None else Lease.of(row)


def release(conn: Connection, name: str, holder: str, token: int) -> bool:
    """Give the lease up at once (a clean stop), so the next holder need not wait it out."""
    cursor = conn.execute(
        "UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ? AND token = ?",
        (name, holder, token),
    )
    return cursor.rowcount == 1


def expire_all(conn: Connection) -> int:
    """End every lease now (tokens kept, so the next holders' tokens still grow).

    For a SQLite store opened under its file lock: no other daemon can be alive on the file, so
    the leases of one that was killed need not be waited out.
    """
    return int(conn.execute("UPDATE leases SET expires_at = 0 WHERE expires_at > 0").rowcount)


def fence(conn: Connection, name: str, holder: str, token: int) -> None:
    """Raise LeaseLostError unless `holder` still holds `name` with `token`.

    Called first in the transaction whose writes depend on the lease. On PostgreSQL the row is
    share-locked until that transaction ends, so a takeover waits for it instead of slipping
    in between this check and the commit; SQLite has one writer.
    """
    row = conn.execute(
        "SELECT token FROM leases WHERE name = ? AND holder = ? AND token = ?"  # noqa: S608
        + share_lock(conn),
        (name, holder, token),
    ).fetchone()
    if row is None:
        raise LeaseLostError(f"the lease {name!r} (token {token}) was taken over")


def get(conn: Connection, name: str) -> Lease | None:
    row = conn.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
    return None if row is None else Lease.of(row)


def all_leases(conn: Connection) -> list[Lease]:
    return [Lease.of(row) for row in conn.execute("SELECT * FROM leases ORDER BY name")]
