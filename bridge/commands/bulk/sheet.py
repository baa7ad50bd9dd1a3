"""Bulk send files: a CSV in UTF-8 (with or without a BOM) or GBK, read into numbered rows.

Chinese Excel saves "CSV" in GBK; others save UTF-8, often with a BOM. Without `--encoding`,
a file that is valid UTF-8 is read as UTF-8, else as GBK (read by its superset GB18030).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from dataclasses import dataclass

ENCODINGS = ("auto", "utf-8", "gbk")


class SheetError(ValueError):
    """The file cannot be read as a CSV table; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Sheet:
    """A CSV table: its column names (lower case) and its rows, numbered as a spreadsheet does
    (the header is row 1), blank rows left out."""

    columns: tuple[str, ...]
    rows: tuple[tuple[int, dict[str, str]], ...]
    encoding: str  # what the file was read as

    def __len__(self) -> int:
        return len(self.rows)


def digest(data: bytes) -> str:
    """The file's identity for resuming a run: the SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, encoding: str = "auto") -> tuple[str, str]:
    """The file's text and the encoding it was read as."""
    if encoding not in ENCODINGS:
        raise SheetError(f"unknown encoding {encoding!r}; one of {', '.join(ENCODINGS)}")
    if data.startswith(codecs.BOM_UTF8) and encoding != "gbk":
        return _decode(data[len(codecs.BOM_UTF8) :], "utf-8"), "utf-8 with BOM"
    if encoding in ("auto", "utf-8"):
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            if encoding == "utf-8":
                raise SheetError(_undecodable(data, "utf-8")) from None
    return _decode(data, "gb18030"), "gbk"


def _decode(data: bytes, codec: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        raise SheetError(_undecodable(data, codec)) from None


def _undecodable(data: bytes, codec: str) -> str:
    try:
        data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        name = "GBK" if codec == "gb18030" else codec.upper()
        return (
            f"line {line}: byte 0x{data[exc.start]:02X} is not {name}; save the file as "
            "UTF-8 (or GBK), or say which with --encoding"
        )
    return f"the file is not {codec}"


def read(data: bytes, encoding: str = "auto") -> Sheet:
    """Decode and parse a CSV file whose first row names its columns."""
    text, used = decode(data, encoding)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        records = list(reader)
    except csv.Error as exc:
        raise SheetError(f"line {reader.line_num}: not valid CSV ({exc})") from None
    if not records or not any(cell.strip() for cell in records[0]):
        raise SheetError("the file is empty: its first row must name the columns")
    columns = tuple(cell.strip().lower() for cell in records[0])
    if "" in columns:
        raise SheetError(f"row 1: column {columns.index('') + 1} has no name")
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise SheetError(f"row 1: column {', '.join(map(repr, repeated))} appears twice")
    rows: list[tuple[int, dict[str, str]]] = []
    for number, record in enumerate(records[1:], 2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(columns):
            raise SheetError(
                f"row {number}: {len(record)} values, but the first row names {len(columns)} "
                "columns (a comma in a value needs the value in double quotes)"
            )
        values = dict(zip(columns, (cell.strip() for cell in record), strict=False))
        rows.append((number, {name: values.get(name, "") for name in columns}))
    return Sheet(columns, tuple(rows), used)
