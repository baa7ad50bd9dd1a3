"""structlog set-up: JSON lines off a terminal, pretty on one; numbers masked, secrets redacted."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from pydantic import BaseModel, SecretStr
from structlog.typing import EventDict, Processor, WrappedLogger

from bridge.sms import has_mobile, mask_text

REDACTED = "<redacted>"
_SEQUENCES = (list, tuple)
_SCRUBBED = (str, dict, list, tuple)  # what can hold text; anything else is left as it is


class Scrubber:
    """Masks phone numbers in every string of an event and replaces known secrets.

    Call sites mask on purpose; this is the net under them, so a number or key that slips into
    an exception text or a third-party message still never reaches the journal.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: str) -> None:
        if len(secret) >= 6 and secret not in self._secrets:
            self._secrets.add(secret)
            # One pass finds them all; the longest first, so one inside another goes whole.
            alternatives = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, alternatives)))

    def scrub(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return mask_text(text)

    def _clean(self, texts: list[str]) -> bool:
        """True when no text holds a secret or a number: one search over them all (a NUL
        between two texts ends a number and no secret holds one), not one per text."""
        joined = "\0".join(texts)
        if self._pattern is not None and self._pattern.search(joined):
            return False
        return not has_mobile(joined)

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {key: self._value(item) for key, item in value.items()}
        if isinstance(value, _SEQUENCES):
            return type(value)(self._value(item) for item in value)
        return value

    def __call__(
        self, logger: WrappedLogger, method: str, event: MutableMapping[str, Any]
    ) -> EventDict:
        # In place: structlog hands every processor a dict of its own. Numbers and flags,
        # most of a line, pass untouched; this runs for every line the daemon writes, and
        # nearly every line's strings are clean: they are looked at once, together.
        texts: list[str] = []
        for value in event.values():
            if type(value) is str:
                texts.append(value)
            elif isinstance(value, _SCRUBBED):
                break  # a container (or a str subclass): each part is scrubbed below
        else:
            if self._clean(texts):
                return event
        for key, value in event.items():
            if isinstance(value, _SCRUBBED):
                event[key] = self._value(value)
        return event


SCRUBBER = Scrubber()


class _Sink:
    """Where our events are written; re-pointed by configure_logging, never replaced.

    Loggers bound before a reconfiguration keep writing to whatever stream is current.
    """

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr

    def write(self, text: str) -> int:
        # As with stdlib logging, a log line that cannot be written never fails the caller.
        try:
            return self.stream.write(text)
        except (ValueError, OSError):
            return 0

    def flush(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.stream.flush()


_SINK = _Sink()


def register_secrets(value: object) -> int:
    """Teach the log scrubber every SecretStr found in a config (models, mappings, lists)."""
    found = 0
    if isinstance(value, SecretStr):
        SCRUBBER.add_secret(value.get_secret_value())
        return 1
    if isinstance(value, BaseModel):
        return sum(register_secrets(getattr(value, name)) for name in type(value).model_fields)
    if isinstance(value, dict):
        return sum(register_secrets(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(register_secrets(item) for item in value)
    return found


def _render_exception(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    # Render tracebacks to text first, so the scrubber sees them as strings.
    return structlog.processors.format_exc_info(logger, method, event)


def configure_logging(
    stream: TextIO | None = None, *, json: bool | None = None, level: str = "info"
) -> None:
    """Send structlog, stdlib logging and Python warnings to `stream`, as JSON unless it is a
    terminal: a library's line (APScheduler's "skipped: maximum number of running instances",
    a RuntimeWarning) comes out like ours, naming the logger it came from."""
    stream = stream if stream is not None else sys.stderr
    as_json = json if json is not None else not stream.isatty()
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Processor
    if as_json:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        tail: list[Processor] = [_render_exception, SCRUBBER]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
        tail = [SCRUBBER]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log repeats what our own events say, with unmasked query strings.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # APScheduler narrates every run at info; the pollers log what matters themselves.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # Warnings would go to stderr as plain text; through logging they get the same renderer.
    # Off first: capturing again after something else replaced showwarning would do nothing.
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    _SINK.stream = stream
    # Our own events skip the stdlib machinery (the hot path logs every SMS); the stdlib
    # handler above renders what libraries log, through the same scrubber and renderer.
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            *tail,
            renderer,
        ],
        logger_factory=structlog.WriteLoggerFactory(_SINK),  # type: ignore[arg-type]
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=False,
    )
