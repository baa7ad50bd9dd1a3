"""`smsbridge retry`, `cancel` and `release`: a person's hand on one queued message."""

from __future__ import annotations

import argparse
import asyncio
import errno
import time
from collections.abc import Callable
from functools import partial

import bridge.commands.history.source as source
from bridge.commands.common import EXIT_OK, BadInputError, add_common
from bridge.commands.output import emit_json, emit_lines
from bridge.outbox import JobAction, JobActionError, cancel_job, release_job, retry_job
from bridge.runtime import announce
from bridge.store import Connection, StoreOpenError, make_store

_BESIDE = (
    "Writes through the store, beside a running daemon: its dispatcher picks the change up "
    "within a few seconds. The message's ID is the one `smsbridge messages` and `queue` show."
)

Action = Callable[[Connection, int, float], JobAction]


def _retry(conn: Connection, job_id: int, now: float) -> JobAction:
    return retry_job(conn, job_id, now, "retried by hand")


def _cancel(conn: Connection, job_id: int, now: float) -> JobAction:
    return cancel_job(conn, job_id, now, "cancelled by hand")


_ACTIONS: dict[str, tuple[str, Action]] = {
    "retry": (
        "send a failed or unknown message again (a duplicate if it did go out), or a retrying "
        "one now",
        _retry,
    ),
    "cancel": (
        "cancel a message not yet sent (queued, retrying or held): it fails and is never sent",
        _cancel,
    ),
    "release": (
        "send a held message now (if its hold still stands, it is held again)",
        release_job,
    ),
}


def _id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a message ID (a whole number), got {text!r}")
    return int(text)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `retry`, `cancel` and `release`."""
    for name, (what, action) in _ACTIONS.items():
        sub = subparsers.add_parser(
            name, help=what, description=f"{what[0].upper()}{what[1:]}. {_BESIDE}"
        )
        add_common(sub)
        sub.add_argument("id", type=_id, metavar="ID", help="the message's ID")
        sub.set_defaults(handler=partial(cmd_act, action=action))


async def cmd_act(args: argparse.Namespace, action: Action) -> int:
    config = (await asyncio.to_thread(source.load_sections, args.config)).store
    path, url = config.path, config.conninfo()
    if not url and not path.exists():
        # Opening would create an empty store where the daemon's user may not be able to; a
        # config naming the wrong store is an environment problem (78), as for history.
        missing = FileNotFoundError(errno.ENOENT, "no such file: nothing was ever queued there")
        raise StoreOpenError(path, missing)
    store = make_store(path, url)
    await store.open()
    try:
        done = await store.write(lambda conn: action(conn, args.id, time.time()))
        await announce(store, [done.output])
    except JobActionError as exc:
        raise BadInputError(str(exc)) from None  # nothing changed
    finally:
        await store.close()
    if args.json:
        emit_json({"ok": True, "id": done.job_id, "output": done.output, "done": done.done})
    else:
        emit_lines([done.done])
    return EXIT_OK
