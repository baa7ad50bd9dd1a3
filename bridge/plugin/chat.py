"""What every chat adapter shares: command events in, thread posts out, platform limits kept."""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar

import aiohttp
from pydantic import Field

from bridge.config import ConfigModel
from bridge.events import Conversation, Event, EventKind
from bridge.plugin.base import Job, Outcome, OutcomeKind, Output, PluginContext
from bridge.plugin.ratelimit import Limiter


class CommandPolicy(ConfigModel):
    """Who may send SMS from a chat input, to whom, and how often."""

    # Chat user ids (or names) allowed to run `sms`; "*" lets everyone who can reach the bot.
    allow_users: list[str] = Field(default_factory=list)
    # Contacts, groups and numbers they may text; "*" allows any valid number.
    allow_recipients: list[str] = Field(default_factory=lambda: ["*"])
    # SMS one user may send from this input in an hour, one per recipient; null: no cap.
    user_cap_per_hour: Annotated[int, Field(ge=1)] | None = 20


class ChatInputConfig(ConfigModel):
    """Options every chat input has, beside its platform's own."""

    reply_output: str  # the output that posts answers and SMS replies back into this platform
    commands: CommandPolicy = CommandPolicy()


class ChatOutputConfig(ConfigModel):
    """Options every chat output has, beside its platform's own."""

    channel: str = ""  # where posts with no conversation go
    rate_limit: Annotated[float, Field(gt=0)] = 1.0  # posts a second; more wait in the outbox
    split_long: bool = True  # split texts over the platform's limit (False: truncate, saying so)


def command_event(
    *,
    source: str,
    platform: str,
    text: str,
    user_id: str,
    user_name: str,
    reply_output: str,
    channel: str,
    thread: str,
    data: Mapping[str, Any] | None = None,
) -> Event:
    """The event for a chat command; `text` is what follows the `sms` keyword or slash command.

    Answers go to (reply_output, channel, thread): the thread the command was written in.
    """
    return Event(
        kind=EventKind.COMMAND,
        source=source,
        labels={"platform": platform, "user": user_id, "user_name": user_name, "channel": channel},
        text=text.strip(),
        data=dict(data or {}),
        conversation=Conversation(output=reply_output, channel=channel, thread=thread),
    )


# `sms` (or `/sms`) as the first word, after any @mentions a client left in the text (DingTalk
# separates mentions with U+2005, which \s matches). A greedy tail, stripped afterwards: a lazy
# one before \s* backtracks quadratically.
_COMMAND = re.compile(r"\s*(?:@\S*\s+)*/?sms(?:\s(?P<rest>.*))?", re.IGNORECASE | re.DOTALL)


def command_text(text: str) -> str | None:
    """What follows the `sms` keyword in a chat message, or None when it is no `sms` command."""
    match = _COMMAND.fullmatch(text)
    if match is None:
        return None
    return (match.group("rest") or "").strip()


# A button's command: what `sms <command>` would say (`ack 3`, `close 3`); nothing else is one.
_BUTTON_COMMAND = re.compile(r"(ack|close) [1-9][0-9]{0,9}")


@dataclass(frozen=True, slots=True)
class Button:
    """A button under a chat message: pressing it runs `command` as if typed after `sms`."""

    label: str  # `Ack`, `Close`
    command: str  # `ack 3`, `close 3`


def job_buttons(job: Job) -> tuple[Button, ...]:
    """The buttons a job's message carries (`payload["buttons"]`: [label, command] pairs)."""
    found = job.payload.get("buttons") or ()
    return tuple(
        Button(str(label), str(command))
        for label, command in found
        if button_command(str(command)) is not None
    )


def button_command(value: str) -> str | None:
    """The command a pressed button carries, or None when it is not one a button may run."""
    return value if _BUTTON_COMMAND.fullmatch(value) else None


ChatConfigT = TypeVar("ChatConfigT", bound=ChatOutputConfig)


class ChatApiError(Exception):
    """A platform API refused a post; says whether retrying can help and when."""

    def __init__(self, reason: str, *, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        # 429 and 5xx are the platform's trouble, and so is a connection that failed (status 0).
        return self.status in (0, 408, 429) or self.status >= 500


def split_text(text: str, limit: int, *, split: bool = True) -> list[str]:
    """Parts of at most `limit` characters, cut at line breaks or spaces where possible.

    Parts are numbered "(1/3)" so a reader knows more follows; without splitting, the text is
    cut and says how much was left out.
    """
    if len(text) <= limit:
        return [text]
    if not split:
        note = " … (truncated, {} more characters)"
        keep = limit - len(note.format(len(text)))
        return [text[:keep] + note.format(len(text) - keep)]
    room = limit - len(" (99/99)")
    parts: list[str] = []
    rest = text
    while rest:
        if len(rest) <= room:
            parts.append(rest)
            break
        cut = max(rest.rfind("\n", 0, room), rest.rfind(" ", 0, room))
        if cut <= room // 2:
            cut = room
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return [f"{part} ({n}/{len(parts)})" for n, part in enumerate(parts, 1)]


class ChatOutput(Output[ChatConfigT]):
    """Posts jobs to a chat platform: one post per job (or per part), paced, errors classified.

    A job's recipient is the channel ('' for the configured default) and `payload["thread"]`
    the thread to answer in.
    """

    max_chars: ClassVar[int] = 4000  # the platform's limit for one message

    def __init__(self, config: ChatConfigT, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        self._limiter = Limiter(config.rate_limit, burst=max(1, int(config.rate_limit)))

    @abstractmethod
    async def post(self, channel: str, thread: str, text: str) -> str:
        """Post one message; returns its id on the platform; raises ChatApiError."""

    async def post_buttons(
        self, channel: str, thread: str, text: str, buttons: Sequence[Button]
    ) -> str:
        """Post one message with buttons under it; a platform without buttons says how to do
        the same by command."""
        typed = " or ".join(f"`sms {button.command}`" for button in buttons)
        return await self.post(channel, thread, f"{text}\n({typed})")

    async def deliver(self, jobs: Sequence[Job]) -> list[Outcome]:
        return [await self._deliver_one(job) for job in jobs]

    async def _deliver_one(self, job: Job) -> Outcome:
        channel = job.recipient or self.config.channel
        thread = str(job.payload.get("thread", "") or "")
        parts = split_text(job.text, self.max_chars, split=self.config.split_long)
        buttons = job_buttons(job)
        refs = []
        # A retry after a part failed posts the whole text again: a repeated part beats a
        # missing one, and multi-part answers are rare.
        for index, part in enumerate(parts):
            await self._limiter.acquire()
            try:
                if buttons and index == len(parts) - 1:  # under the message's last part
                    refs.append(await self.post_buttons(channel, thread, part, buttons))
                else:
                    refs.append(await self.post(channel, thread, part))
            except ChatApiError as exc:
                kind = OutcomeKind.RETRY if exc.retryable else OutcomeKind.FAILED
                return Outcome(
                    job.id,
                    kind,
                    exc.reason,
                    retry_after=exc.retry_after,
                    code=str(exc.status or "connection"),
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                return Outcome(
                    job.id,
                    OutcomeKind.RETRY,
                    f"cannot reach the platform: {type(exc).__name__}",
                    code="connection",
                )
        return Outcome(job.id, OutcomeKind.SENT, ref=",".join(refs))
