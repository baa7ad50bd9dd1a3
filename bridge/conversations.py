"""Which SMS a reply answers: conversation records per number, newest first.

Functions here take a sqlite3 connection and run inside a Store.write()/read() call, so a
caller composes several of them into one atomic, group-committed transaction.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from bridge.events import Conversation


def record_conversation(
    conn: sqlite3.Connection,
    mobile: str,
    job_id: int,
    event_id: int | None,
    conversation: Conversation | None,
    now: float,
    ttl: float,
) -> int:
    cursor = conn.execute(
        """INSERT INTO conversations (mobile, job_id, event_id, conversation, created_at,
                                      expires_at) VALUES (?, ?, ?, ?, ?, ?)""",
        (
            mobile,
            job_id,
            event_id,
            json.dumps(conversation.to_json()) if conversation else None,
            now,
            now + ttl,
        ),
    )
    return int(cursor.lastrowid or 0)


@dataclass(frozen=True, slots=True)
class OpenConversation:
    """The latest live conversation with a number, and the event the SMS was about."""

    id: int
    job_id: int
    event_id: int | None
    conversation: Conversation | None


def latest_conversation(
    conn: sqlite3.Connection, mobile: str, now: float, conversation_id: int | None = None
) -> OpenConversation | None:
    """The most recent live conversation with `mobile`, or the one with the given id."""
    query = "SELECT * FROM conversations WHERE mobile = ? AND expires_at > ?"
    params: tuple[Any, ...] = (mobile, now)
    if conversation_id is not None:
        query += " AND id = ?"
        params = (*params, conversation_id)
    row = conn.execute(query + " ORDER BY created_at DESC, id DESC LIMIT 1", params).fetchone()
    if row is None:
        return None
    raw = row["conversation"]
    return OpenConversation(
        id=row["id"],
        job_id=row["job_id"],
        event_id=row["event_id"],
        conversation=Conversation.from_json(json.loads(raw)) if raw else None,
    )
