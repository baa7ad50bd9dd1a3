"""The adapter SDK: Input and Output, the webhook input helpers, auth checks, the chat base."""

from bridge.plugin.base import (
    Accepted,
    Input,
    Job,
    Outcome,
    OutcomeKind,
    Output,
    PluginContext,
    StoreUnavailableError,
    Submit,
)
from bridge.plugin.webhook import (
    RequestRejectedError,
    answer,
    check_content_type,
    format_loc,
    parse_json,
    read_body,
    reject,
    secret_equal,
    sha256_hex,
    submit_and_answer,
    validation_message,
)

__all__ = [
    "Accepted",
    "Input",
    "Job",
    "Outcome",
    "OutcomeKind",
    "Output",
    "PluginContext",
    "RequestRejectedError",
    "StoreUnavailableError",
    "Submit",
    "answer",
    "check_content_type",
    "format_loc",
    "parse_json",
    "read_body",
    "reject",
    "secret_equal",
    "sha256_hex",
    "submit_and_answer",
    "validation_message",
]
