"""Signed JSON callbacks: one HMAC-signed POST per job to a configured URL."""

from bridge.plugins.http_callback.config import HttpCallbackConfig
from bridge.plugins.http_callback.output import HttpCallbackOutput
from bridge.plugins.http_callback.signing import sign, verify

__all__ = ["HttpCallbackConfig", "HttpCallbackOutput", "sign", "verify"]
