"""A bulk file's rows checked, every one before anything is sent: recipient, text, template."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bridge.commands.bulk.sheet import Sheet
from bridge.outbox import bulk
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.errors import InvalidRequestError
from bridge.plugins.c123.models import OutgoingSms
from bridge.plugins.c123.output import PARAMS, TEMPLATE
from bridge.plugins.c123.validation import PLACEHOLDER, SEPARATOR, render_param
from bridge.rules import ContactConfig
from bridge.sms import InvalidNumberError, normalize_number

RECIPIENT_COLUMNS = ("number", "contact")
PARAM_COLUMN = re.compile(r"p([1-9]|10)")
SHOWN_PROBLEMS = 20  # a file with a systematic mistake would otherwise print one per row


@dataclass(slots=True)
class Checked:
    """The rows that can be sent (each as queued, and as the gateway client plans it), and
    what is wrong with the others (nothing is sent then)."""

    messages: list[bulk.BulkMessage] = field(default_factory=list)
    outgoing: list[OutgoingSms] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def report(self) -> str:
        shown = self.problems[:SHOWN_PROBLEMS]
        more = len(self.problems) - len(shown)
        return "\n".join([*shown, *([f"... and {more} more"] if more else [])])


def check_template(template: str, columns: tuple[str, ...]) -> list[str]:
    """What is wrong with a `--template` for a file with these columns."""
    problems: list[str] = []
    if SEPARATOR in template:
        problems.append(f"--template must not contain {SEPARATOR!r}, the gateway's separator")
    used = sorted({f"p{n}" for n in PLACEHOLDER.findall(template)}, key=lambda p: int(p[1:]))
    if not used:
        problems.append("--template has no {p1}..{p10} placeholder")
    for name in used:
        if not PARAM_COLUMN.fullmatch(name):
            problems.append(f"--template uses {{{name}}}: only {{p1}}..{{p10}} exist")
        elif name not in columns:
            problems.append(f"--template uses {{{name}}}, but the file has no {name} column")
    return problems


def check_columns(columns: tuple[str, ...], template: str | None) -> list[str]:
    """What is wrong with the file's columns for this kind of send."""
    problems: list[str] = []
    if not any(name in columns for name in RECIPIENT_COLUMNS):
        problems.append(
            f"the first row names no recipient column: 'number' or 'contact' (it has "
            f"{', '.join(map(repr, columns))})"
        )
    if template is None and "text" not in columns:
        problems.append(
            "the file has no 'text' column: give each row its text, or use --template with "
            "p1..p10 columns"
        )
    if template is not None:
        problems.extend(check_template(template, columns))
    return problems


def _recipient(values: Mapping[str, str], contacts: Mapping[str, ContactConfig]) -> str:
    """The row's number; raises ValueError saying what is wrong."""
    number, contact = values.get("number", ""), values.get("contact", "")
    if number and contact:
        raise ValueError("has both a number and a contact: give one")
    if contact:
        found = contacts.get(contact)
        if found is None:
            raise ValueError(f"contact {contact!r} is not in the config's contacts")
        return normalize_number(found.number)
    if not number:
        raise ValueError("has no number (or contact)")
    try:
        return normalize_number(number)
    except InvalidNumberError as exc:
        raise ValueError(f"number {exc}") from None


def check_rows(
    sheet: Sheet,
    client: C123Client,
    contacts: Mapping[str, ContactConfig],
    template: str | None = None,
) -> Checked:
    """Every row checked as the gateway would check it, each problem named by row and column."""
    checked = Checked(problems=check_columns(sheet.columns, template))
    if checked.problems:
        return checked
    if not sheet.rows:
        checked.problems.append("the file has no rows below its first")
        return checked
    params = [name for name in sheet.columns if PARAM_COLUMN.fullmatch(name)]
    seen: dict[tuple[str, str], int] = {}
    for row, values in sheet.rows:
        try:
            number = _recipient(values, contacts)
        except ValueError as exc:
            checked.problems.append(f"row {row}: {exc}")
            continue
        payload: dict[str, object] = {}
        given: dict[str, str] | None = None
        if template is None:
            text = values["text"]
            column = "text"
            if SEPARATOR in text:
                checked.problems.append(
                    f"row {row}: the text contains {SEPARATOR!r}, the gateway's separator"
                )
                continue
        else:
            given = {name: values[name] for name in params}
            bad = [name for name, value in given.items() if SEPARATOR in value]
            if bad:
                checked.problems.append(
                    f"row {row}: {bad[0]} contains {SEPARATOR!r}, the gateway's separator"
                )
                continue
            text = render_param(template, {k: [v] for k, v in given.items()}, 0)
            column = "the text from --template"
            payload = {TEMPLATE: template, PARAMS: given}
        try:
            message = client.outgoing(
                number,
                text,
                template=template or "",
                params=given,
            )
        except InvalidRequestError as exc:
            checked.problems.append(f"row {row}: {column} {exc.problem}")
            continue
        first = seen.setdefault((number, text), row)
        if first != row:
            checked.problems.append(f"row {row} repeats row {first}: the same number and text")
            continue
        checked.messages.append(
            bulk.BulkMessage(row, number, text, message.estimated_segments, payload)
        )
        checked.outgoing.append(message)
    return checked
