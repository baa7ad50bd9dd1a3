"""Typed errors for every way a c123 call can fail, each saying whether a retry can help."""

from __future__ import annotations

from enum import Enum


class SendCertainty(Enum):
    """Whether a failed send call may still have reached the phones."""

    NOT_SENT = "not_sent"  # the gateway certainly did not accept it
    MAYBE_SENT = "maybe_sent"  # it may have been accepted: retrying may duplicate an SMS


class C123Error(Exception):
    """Base of every error the c123 client raises; never carries the key or a full number."""

    retryable: bool = False
    certainty: SendCertainty = SendCertainty.NOT_SENT
    # Set on faults of the account rather than the message: the account pauses (see account.py).
    account_fault: str = ""

    def __init__(self, message: str, *, action: str = "") -> None:
        super().__init__(f"{action}: {message}" if action else message)
        self.action = action

    @property
    def ambiguous(self) -> bool:
        """True when a send that failed this way may nevertheless have been accepted."""
        return self.certainty is SendCertainty.MAYBE_SENT


class InvalidRequestError(C123Error, ValueError):
    """Our own request broke a gateway rule; caught before calling, so nothing was sent."""

    def __init__(self, field: str, problem: str, *, action: str = "") -> None:
        super().__init__(f"{field}: {problem}", action=action)
        self.field = field
        self.problem = problem


# --- The gateway answered with a result code other than success ------------------------------


class GatewayRefusedError(C123Error):
    """The gateway answered with a documented failure code."""

    code: int = 0
    meaning: str = ""

    def __init__(self, *, action: str = "") -> None:
        super().__init__(f"gateway refused with code {self.code}: {self.meaning}", action=action)


class AccountFormatError(GatewayRefusedError):
    code, meaning = 0, "account is not in employee@enterprise form"


class RateLimitedError(GatewayRefusedError):
    code, meaning = -1, "refused: too fast, outside allowed hours, or IP not bound"
    retryable = True


class WrongKeyError(GatewayRefusedError):
    code, meaning = -2, "wrong key (repeated wrong keys lock it)"
    account_fault = "wrong_key"


class KeyLockedError(GatewayRefusedError):
    code, meaning = -3, "key locked"
    account_fault = "key_locked"


class BadParametersError(GatewayRefusedError):
    code, meaning = -4, "bad parameters (content, numbers or schedule time)"


class NoSuchAccountError(GatewayRefusedError):
    code, meaning = -5, "no such account"
    account_fault = "no_such_account"


class AccountLockedError(GatewayRefusedError):
    code, meaning = -6, "account locked or expired"
    account_fault = "account_locked"


class ApiDisabledError(GatewayRefusedError):
    code, meaning = -7, "account has API sending disabled"
    account_fault = "api_disabled"


class ChannelGroupError(GatewayRefusedError):
    code, meaning = -8, "channel group not allowed"
    account_fault = "channel_group"


class InsufficientBalanceError(GatewayRefusedError):
    code, meaning = -9, "balance too low"
    retryable = True  # once the account is topped up


class GatewayInternalError(GatewayRefusedError):
    code, meaning = -10, "gateway internal error"
    retryable = True
    certainty = SendCertainty.MAYBE_SENT


class ChargingFailedError(GatewayRefusedError):
    code, meaning = -11, "charging failed"
    retryable = True


REFUSALS: dict[int, type[GatewayRefusedError]] = {
    cls.code: cls
    for cls in (
        AccountFormatError,
        RateLimitedError,
        WrongKeyError,
        KeyLockedError,
        BadParametersError,
        NoSuchAccountError,
        AccountLockedError,
        ApiDisabledError,
        ChannelGroupError,
        InsufficientBalanceError,
        GatewayInternalError,
        ChargingFailedError,
    )
}


class UnknownResultCodeError(C123Error):
    """A result code the provider's document does not list."""

    retryable = True
    certainty = SendCertainty.MAYBE_SENT

    def __init__(self, code: str, *, action: str = "") -> None:
        super().__init__(f"gateway answered undocumented result code {code!r}", action=action)
        self.code = code


def refusal_for(code: int, *, action: str) -> GatewayRefusedError:
    """The typed error for a documented failure code (the caller checks it is documented)."""
    return REFUSALS[code](action=action)


class AccountPausedError(C123Error):
    """No call was made: the account is paused, its key is known to be wrong, or unreadable.

    `account_fault` is one of the account-fault names (wrong_key, key_locked, ...) or key_file.
    """

    def __init__(self, reason: str, detail: str, *, action: str = "") -> None:
        super().__init__(f"account paused ({reason}): {detail}; no call made", action=action)
        self.account_fault = reason
        self.detail = detail


class KeyRotationError(C123Error):
    """A key rotation could not go ahead safely; the gateway was not asked for a new key."""


# --- The answer could not be had or read -----------------------------------------------------


class TransportError(C123Error):
    """No usable answer came back."""

    retryable = True


class ConnectFailedError(TransportError):
    """The connection could not be opened: the request never left this host."""


class ConnectTimeoutError(ConnectFailedError):
    """Opening the connection took longer than the connect timeout."""


class ResponseTimeoutError(TransportError):
    """The request was sent but no answer came within the total timeout."""

    certainty = SendCertainty.MAYBE_SENT


class ConnectionDroppedError(TransportError):
    """The connection closed after the request was sent and before a whole answer came."""

    certainty = SendCertainty.MAYBE_SENT


class HttpStatusError(TransportError):
    """The gateway (or a proxy before it) answered with an HTTP error status."""

    def __init__(self, status: int, *, action: str = "") -> None:
        super().__init__(f"HTTP status {status}", action=action)
        self.status = status
        # A 4xx means the URL or method is wrong: retrying the same request cannot help,
        # and the gateway did not process it. A 5xx may come after the send was committed.
        self.retryable = status >= 500
        self.certainty = SendCertainty.MAYBE_SENT if status >= 500 else SendCertainty.NOT_SENT


class KeyNotProvenError(TransportError):
    """The getBalance that proves a key got no clear answer, so the call itself was not made."""


class MalformedResponseError(TransportError):
    """The body was not the XML the protocol promises."""

    certainty = SendCertainty.MAYBE_SENT

    def __init__(self, problem: str, *, action: str = "") -> None:
        super().__init__(f"malformed answer: {problem}", action=action)
        self.problem = problem
