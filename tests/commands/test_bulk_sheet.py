"""Bulk files read back exactly as written, in UTF-8 (with or without BOM) and GBK; every row
checked before anything is sent, with '{|}' refused wherever it appears."""

from __future__ import annotations

import codecs
import csv
import io
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from bridge.commands.bulk.rows import check_rows
from bridge.commands.bulk.sheet import SheetError, read
from bridge.plugins.c123.client import C123Client
from bridge.plugins.c123.config import C123Config
from bridge.plugins.c123.simulator import DEFAULT_ACCOUNT, DEFAULT_AUTHKEY
from bridge.rules import ContactConfig

# What a spreadsheet cell may hold: letters, CJK, punctuation, quotes, commas, line breaks.
GBK_TEXT = (
    st.text(
        st.sampled_from(
            list("abcXYZ 019,\"'\n;:!?-_{}|") + list("王伟你好确认关闭升级短信测试，。！")
        ),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(bool)
)
ANY_TEXT = (
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\ufeff")
        | st.sampled_from(["\n", ","]),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(bool)
)
NUMBERS = st.integers(0, 99_999_999).map(lambda n: f"151{n:08d}")


def encode(rows: list[tuple[str, str]], encoding: str) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["number", "text"])
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


@given(st.lists(st.tuples(NUMBERS, ANY_TEXT), max_size=20), st.sampled_from(["utf-8", "bom"]))
def test_utf8_files_read_back_exactly(rows: list[tuple[str, str]], form: str) -> None:
    data = encode(rows, "utf-8")
    if form == "bom":
        data = codecs.BOM_UTF8 + data
    sheet = read(data)
    assert sheet.encoding == ("utf-8 with BOM" if form == "bom" else "utf-8")
    assert sheet.columns == ("number", "text")
    assert [(v["number"], v["text"]) for _, v in sheet.rows] == rows
    assert [row for row, _ in sheet.rows] == list(range(2, len(rows) + 2))


@given(st.lists(st.tuples(NUMBERS, GBK_TEXT), min_size=1, max_size=20))
def test_gbk_files_read_back_exactly(rows: list[tuple[str, str]]) -> None:
    """What Chinese Excel writes; a GBK file that happens to be valid UTF-8 too is read by
    --encoding gbk."""
    data = encode(rows, "gbk")
    try:
        data.decode("utf-8")
        ambiguous = True
    except UnicodeDecodeError:
        ambiguous = False
    sheet = read(data, "gbk" if ambiguous else "auto")
    assert sheet.encoding == "gbk"
    assert [(v["number"], v["text"]) for _, v in sheet.rows] == rows


def test_a_file_in_neither_encoding_is_refused_with_its_line() -> None:
    with pytest.raises(SheetError, match=r"line 2: byte 0x80 is not GBK"):
        read(b"number,text\n15100000000,\x80\n")
    with pytest.raises(SheetError, match=r"line 1: byte 0xCD is not UTF-8"):
        read("number,王".encode("gbk"), "utf-8")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "the file is empty"),
        (b"number,number\n1,2\n", "'number' appears twice"),
        (b"number,,text\n", "column 2 has no name"),
        (b"number,text\n151,a,b\n", "row 2: 3 values, but the first row names 2 columns"),
        (b'number,text\n151,"open\n', "not valid CSV"),
    ],
)
def test_malformed_tables_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(SheetError, match=problem):
        read(data)


def client() -> C123Client:
    # Never called: the checks only use the account's limits, signature and price.
    config = C123Config(
        base_url="http://127.0.0.1:9",
        account=DEFAULT_ACCOUNT,
        authkey=SecretStr(DEFAULT_AUTHKEY),
        segment_price=Decimal("0.05"),
    )
    return C123Client(config, session=None)  # type: ignore[arg-type]


@given(st.lists(st.tuples(NUMBERS, ANY_TEXT), min_size=1, max_size=10), st.data())
def test_the_separator_is_refused_in_any_text_or_value(
    rows: list[tuple[str, str]], data: st.DataObject
) -> None:
    """Put '{|}' anywhere in one row's text (or template value): that row, and only it, is
    named; nothing of the file is sendable."""
    victim = data.draw(st.integers(0, len(rows) - 1))
    at = data.draw(st.integers(0, len(rows[victim][1])))
    text = rows[victim][1]
    rows[victim] = (rows[victim][0], text[:at] + "{|}" + text[at:])
    sheet = read(encode(rows, "utf-8"))
    for template in (None, "Hello {p1}"):
        if template is not None:
            sheet = read(encode(rows, "utf-8").replace(b"number,text", b"number,p1", 1))
        checked = check_rows(sheet, client(), {}, template)
        assert any(p.startswith(f"row {victim + 2}") and "'{|}'" in p for p in checked.problems)
        assert not any(f"row {victim + 2}:" in p for p in checked.problems if "'{|}'" not in p)


def test_every_problem_is_named_by_row_and_the_good_rows_estimated() -> None:
    contacts = {"alice": ContactConfig(number="15102110086", name="Alice")}
    sheet = read(
        "contact,number,text\n"
        "alice,,hi\n"  # 2: fine
        ",12345,hi\n"  # 3: not a number
        "bob,,hi\n"  # 4: unknown contact
        ",15102110087,\n"  # 5: empty text
        "alice,15102110087,hi\n"  # 6: both
        f",15102110087,{'长' * 1001}\n"  # 7: too long
        ",+86 151 0211 0086,hi\n".encode()  # 8: alice's number and text again
    )
    checked = check_rows(sheet, client(), contacts)
    assert checked.problems == [
        "row 3: number '12345' is not a mainland mobile number (11 digits starting with 1, "
        "optionally prefixed by +86 or 86)",
        "row 4: contact 'bob' is not in the config's contacts",
        "row 5: text must not be empty",
        "row 6: has both a number and a contact: give one",
        "row 7: text has 1001 characters; the limit is 1000",
        "row 8 repeats row 2: the same number and text",
    ]
    good = check_rows(
        read(b"number,text\n15102110086,hi\n15102110087," + b"x" * 80 + b"\n"), client(), {}
    )
    assert good.problems == []
    assert [(m.row, m.number, m.segments) for m in good.messages] == [
        (2, "15102110086", 1),
        (3, "15102110087", 2),
    ]


def test_a_template_needs_its_columns() -> None:
    sheet = read(b"number,p1\n15102110086,x\n")
    for template, problem in (
        ("Dear {p2}", "--template uses {p2}, but the file has no p2 column"),
        ("Dear {p11}", "only {p1}..{p10} exist"),
        ("Dear you", "has no {p1}..{p10} placeholder"),
        ("a{|}{p1}", "must not contain '{|}'"),
    ):
        checked = check_rows(sheet, client(), {}, template)
        assert any(problem in p for p in checked.problems), (template, checked.problems)
    checked = check_rows(sheet, client(), {}, "Dear {p1}, {p1}!")
    assert checked.problems == []
    (message,) = checked.messages
    assert message.text == "Dear x, x!"
    assert message.payload == {"template": "Dear {p1}, {p1}!", "params": {"p1": "x"}}
