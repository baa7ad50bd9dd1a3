"""Chat commands: `sms <target> <text>`, `sms balance`, `sms status <id>`, `sms help`, and
paging's `sms ack N`, `sms close N`, `sms incidents`, `sms oncall`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Protocol, runtime_checkable

from bridge.events import Conversation, Event
from bridge.intake.pipeline import Pipeline
from bridge.outbox import jobs as outbox
from bridge.plugin import CommandPolicy
from bridge.rules import Directory, Recipient, SmsAction, UnresolvedError
from bridge.sms import InvalidNumberError, mask_number, mask_text
from bridge.store import Connection
from bridge.text import clean

HELP = (
    "sms <number|contact|group> <text> — send an SMS; replies appear in this thread\n"
    "sms balance — the SMS account balance\n"
    "sms status <id> — what became of SMS #<id>\n"
    "sms ack <N> / sms close <N> — acknowledge or close incident #<N>\n"
    "sms incidents — the open incidents\n"
    "sms oncall — who is on call now\n"
    "sms help — this text"
)
SMS_OUTPUT = "sms"
BalanceLookup = Callable[[], Awaitable[Decimal]]
PAGING_VERBS = ("ack", "close", "incidents", "oncall")


@runtime_checkable
class PagingDesk(Protocol):
    """Paging as chat commands use it (the pipeline's pager), inside the command's transaction."""

    def chat(
        self,
        conn: Connection,
        verb: str,
        number: int,
        who: str,
        conversation: Conversation | None,
        now: float,
        touched: set[str],
    ) -> tuple[int, str]:
        """Run a paging verb; returns the jobs queued and the answer for the thread."""
        ...


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command: the verb, and for `send` the target and text, for `status` the id."""

    verb: str
    target: str = ""
    text: str = ""
    job_id: int = 0
    incident: int = 0  # `ack` and `close`: the global incident number
    problem: str = ""  # a usage error to answer with


def parse(text: str) -> Command:
    """Parse what follows `sms`; never raises (a bad command becomes one with a problem)."""
    words = text.strip().split(maxsplit=1)
    if not words or words[0].lower() in ("help", "-h", "--help", "?"):
        return Command("help")
    verb = words[0].lower()
    rest = words[1].strip() if len(words) > 1 else ""
    if verb == "balance":
        return Command("balance")
    if verb == "status":
        ident = rest.lstrip("#")
        if not ident.isdigit():
            return Command("status", problem="usage: sms status <id>, e.g. sms status 12")
        return Command("status", job_id=int(ident))
    # Paging verbs only in their exact shapes: `sms oncall hello` still texts a group `oncall`.
    if verb in ("incidents", "oncall") and not rest:
        return Command(verb)
    if verb in ("ack", "close"):
        ident = rest.lstrip("#")
        if ident.isdigit():
            return Command(verb, incident=int(ident))
        if not rest:
            return Command(verb, problem=f"usage: sms {verb} <incident>, e.g. sms {verb} 3")
    if not rest:
        return Command("send", target=words[0], problem="usage: sms <number|contact|group> <text>")
    return Command("send", target=words[0], text=rest)


class ChatOps:
    """Runs chat commands inside the pipeline's transaction; answers go back to the thread."""

    def __init__(
        self,
        directory: Directory,
        policies: Mapping[str, CommandPolicy],
        balance: BalanceLookup,
        *,
        max_segments: int = 10,
    ) -> None:
        self.directory = directory
        self.policies = policies
        self.balance = balance
        self.max_segments = max_segments

    async def prepare(self, event: Event) -> tuple[Command, str]:
        """Parse, and do the part that needs the network (the balance), before the commit."""
        command = parse(event.text)
        if command.verb != "balance":
            return command, ""
        try:
            return command, f"SMS balance: {await self.balance()} yuan"
        except Exception as exc:  # the answer says why; the daemon must not fail on it
            return command, f"cannot read the balance: {mask_text(str(exc))}"

    def run(
        self,
        pipeline: Pipeline,
        conn: Connection,
        event: Event,
        prepared: tuple[Command, str],
        event_id: int,
        now: float,
        touched: set[str],
    ) -> int:
        """Execute one command and queue its answer; returns the messages queued."""
        command, ready = prepared
        if command.problem:
            answer = command.problem
        elif command.verb == "help":
            answer = HELP
        elif command.verb == "balance":
            answer = ready
        elif command.verb == "status":
            answer = self._status(conn, command.job_id)
        elif command.verb in PAGING_VERBS:
            queued, answer = self._paging(pipeline, conn, event, command, now, touched)
            return queued + pipeline.post_answer(conn, event, answer, event_id, now, touched)
        else:
            sent, answer = self._send(pipeline, conn, event, command, event_id, now, touched)
            return sent + pipeline.post_answer(conn, event, answer, event_id, now, touched)
        return pipeline.post_answer(conn, event, answer, event_id, now, touched)

    def _refusal(self, pipeline: Pipeline, event: Event, what: str) -> str:
        """Why the event's user may not run a command that acts (none: "")."""
        policy = self.policies.get(event.source)
        user = event.labels.get("user", "")
        name = event.labels.get("user_name", "") or user
        if policy is None:
            return "SMS commands are not enabled here"
        if not ({"*", user, name} & set(policy.allow_users)):
            pipeline.notes.warning(
                "command_refused", source=event.source, user=user, reason="user not allowed"
            )
            return f"not allowed: {name} may not {what} from here"
        return ""

    def _paging(
        self,
        pipeline: Pipeline,
        conn: Connection,
        event: Event,
        command: Command,
        now: float,
        touched: set[str],
    ) -> tuple[int, str]:
        refused = self._refusal(pipeline, event, "use paging commands")
        if refused:
            return 0, refused
        paging = pipeline.paging
        if not isinstance(paging, PagingDesk):
            return 0, "paging is not configured (no oncall section)"
        who = event.labels.get("user_name", "") or event.labels.get("user", "")
        return paging.chat(
            conn, command.verb, command.incident, who, event.conversation, now, touched
        )

    def _send(
        self,
        pipeline: Pipeline,
        conn: Connection,
        event: Event,
        command: Command,
        event_id: int,
        now: float,
        touched: set[str],
    ) -> tuple[int, str]:
        refused = self._refusal(pipeline, event, "send SMS")
        policy = self.policies.get(event.source)
        if refused or policy is None:
            return 0, refused
        user = event.labels.get("user", "")
        try:
            recipients = self.directory.resolve([command.target])
        except (UnresolvedError, InvalidNumberError) as exc:
            return 0, mask_text(str(exc))
        refused = self._not_allowed(policy, command.target, recipients)
        if refused:
            return 0, refused
        rule = f"chat:{event.source}:{user}"
        if policy.user_cap_per_hour is not None:
            recent = outbox.sends_by_rule_since(conn, rule, now - 3600)
            if recent + len(recipients) > policy.user_cap_per_hour:
                return 0, (
                    f"over your limit of {policy.user_cap_per_hour} SMS an hour "
                    f"({recent} sent); try later"
                )
        action = SmsAction(
            output=SMS_OUTPUT,
            recipients=recipients,
            group_wait=timedelta(0),
            group_by=(),
            repeat_interval=timedelta(0),
            send_resolved=True,
            cap_per_hour=None,
            # A person texting must not double-send: an unclear outcome is reported, not retried.
            retry_ambiguous=False,
            max_segments=self.max_segments,
        )
        lines = []
        sent = 0
        # A typed text can hold control characters the gateway refuses: sent as it would render.
        text = clean(command.text)
        for recipient in recipients:
            job_id = pipeline.queue_sms(
                conn, rule, action, recipient.number, text, [event], event_id, now, touched
            )
            who = f"{recipient.name} ({mask_number(recipient.number)})"
            if job_id:
                sent += 1
                segments, cost = pipeline.estimate(SMS_OUTPUT, text)
                lines.append(f"SMS #{job_id} to {who}: {segments} segment(s), {cost} yuan")
            else:
                lines.append(f"SMS to {who} held back: the daily SMS budget is spent")
        if sent:
            lines.append("Replies will appear in this thread.")
        return sent, "\n".join(lines)

    def _not_allowed(
        self, policy: CommandPolicy, target: str, recipients: tuple[Recipient, ...]
    ) -> str:
        allowed = policy.allow_recipients
        if "*" in allowed or target in allowed:
            return ""
        try:
            permitted = {r.number for r in self.directory.resolve(allowed)}
        except (UnresolvedError, InvalidNumberError):
            permitted = set()
        outside = [r for r in recipients if r.number not in permitted]
        if not outside:
            return ""
        return f"not allowed: {outside[0].name} is not on this channel's recipient list"

    def _status(self, conn: Connection, job_id: int) -> str:
        row = outbox.job_summary(conn, job_id)
        if row is None or row["output"] != SMS_OUTPUT:
            return f"no SMS #{job_id}"
        who = self.directory.name_for(row["recipient"])
        state = row["state"]
        if state == "sent":
            delivery = row["delivery"] or "no delivery report yet"
            code = f" ({row['carrier_code']})" if row["carrier_code"] else ""
            text = f"sent; {delivery}{code}"
        elif state == "pending" and row["attempts"]:
            text = f"waiting to try again: {row['reason']}"
        elif state in ("pending", "sending"):
            text = "being sent"
        else:
            text = f"{state}: {row['reason']}"
        return f"SMS #{job_id} to {who}: {mask_text(text)}"
