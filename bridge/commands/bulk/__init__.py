"""Bulk sends from a CSV file: one text per row (sendBatch) or a template (sendParam)."""

from bridge.commands.bulk.run import cmd_bulk_send
from bridge.commands.bulk.sheet import ENCODINGS

__all__ = ["ENCODINGS", "cmd_bulk_send"]
