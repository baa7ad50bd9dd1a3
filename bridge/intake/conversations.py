"""Which SMS a reply answers: conversation records per number, newest first.

Functions here take a sqlite3 connection and run inside a Store.write()/read() call, so a
caller composes several of them into one atomic, group-committed transaction.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bridge.events import Conversation
from bridge.store import Connection, Row


def record_conversation(
    conn: Connection,
    mobile: str,
    job_id: int,
    event_id: int | None,
    conversation: Conversation | None,
    now: float,
    ttl: float,
    code: int = 1,
) -> int:
    """Remember that an SMS to `mobile` was about an event (and a chat thread, if any)."""
    cursor = conn.execute(
        """INSERT INTO conversations (mobile, job_id, event_id, conversation, created_at,
                                      expires_at, code) VALUES (?, ?, ?, ?, ?, ?, ?)
           RETURNING id""",
        (
            mobile,
            job_id,
            event_id,
            json.dumps(conversation.to_json()) if conversation else None,
            now,
            now + ttl,
            code,
        ),
    )
    return int(cursor.fetchone()[0])


@dataclass(frozen=True, slots=True)
class ConversationSettings:
    """How replies are matched to the SMS they answer (the `conversations:` section)."""

    ttl: float = 86400.0  # seconds a reply still belongs to its SMS
    reply_codes: bool = True
    default: Conversation | None = None  # where replies matching nothing go
    report_deliveries: bool = False


# A reply names the conversation it answers with the code its SMS carried: "ok #2".
REPLY_CODE = re.compile(r"#(\d{1,3})\b")


def next_code(conn: Connection, mobile: str, now: float) -> tuple[int, int]:
    """The smallest code no live conversation with `mobile` uses, and how many are live."""
    rows = conn.execute(
        "SELECT code FROM conversations WHERE mobile = ? AND expires_at > ?", (mobile, now)
    ).fetchall()
    used = {row["code"] for row in rows}
    code = next(n for n in range(1, len(used) + 2) if n not in used)
    return code, len(rows)


def by_code(conn: Connection, mobile: str, code: int, now: float) -> OpenConversation | None:
    """The newest live conversation with `mobile` whose SMS carried `code`."""
    row = conn.execute(
        """SELECT * FROM conversations WHERE mobile = ? AND code = ? AND expires_at > ?
           ORDER BY created_at DESC, id DESC LIMIT 1""",
        (mobile, code, now),
    ).fetchone()
    return _open(row) if row else None


@dataclass(frozen=True, slots=True)
class OpenConversation:
    """The latest live conversation with a number, and the event the SMS was about."""

    id: int
    job_id: int
    event_id: int | None
    conversation: Conversation | None
    code: int = 1


def latest_conversation(
    conn: Connection, mobile: str, now: float, conversation_id: int | None = None
) -> OpenConversation | None:
    """The most recent live conversation with `mobile`, or the one with the given id."""
    query = "SELECT * FROM conversations WHERE mobile = ? AND expires_at > ?"
    params: tuple[Any, ...] = (mobile, now)
    if conversation_id is not None:
        query += " AND id = ?"
        params = (*params, conversation_id)
    row = conn.execute(query + " ORDER BY created_at DESC, id DESC LIMIT 1", params).fetchone()
    return _open(row) if row else None


def _open(row: Row) -> OpenConversation:
    raw = row["conversation"]
    return OpenConversation(
        id=row["id"],
        job_id=row["job_id"],
        event_id=row["event_id"],
        conversation=Conversation.from_json(json.loads(raw)) if raw else None,
        code=row["code"],
    )
