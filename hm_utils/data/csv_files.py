"""A CSV file as saved: its encoding, separator, header and line ends (:func:`sniff`), and
a UTF-8 copy with plain line ends where polars cannot read the file as it is
(:func:`utf8_source`; Windows-1252 text is recognised by :func:`windows_1252`).

The typed reading of the values and the repairs of their spellings are
:mod:`hm_utils.data.csv_columns`'s; its docstring lists every case and what happens.
"""
from __future__ import annotations

import codecs
import csv
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

__all__ = ["SEPARATORS", "SEPARATOR_NAMES", "CsvFile", "sniff", "NotUtf8", "is_utf8_error", "windows_1252",
           "utf8_source"]

# ------------------------------------------------------------------- sniff --
SEPARATORS = (",", ";", "\t", "|")
SEPARATOR_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}
HEAD_BYTES = 1 << 16


@dataclass
class CsvFile:
    """What :func:`sniff` found out about a CSV file from its first and last 64 KB."""
    path: Path
    encoding: str        # Python codec: utf-8, utf-8-sig, utf-16, utf-16-le, utf-16-be, cp1252
    separator: str
    header: list[str]    # column names, stripped; unnamed columns get ``_unnamed_<i>``
    newline: str         # "\n", "\r\n" or "\r"
    trailing_blank: int  # blank lines at the very end of the file
    notes: list[str] = field(default_factory=list)  # unusual but readable things, for a DataWarning

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def needs_copy(self) -> bool:
        """True when polars cannot read the file as it is (not UTF-8, or CR-only line ends)."""
        return self.encoding not in ("utf-8", "utf-8-sig") or self.newline == "\r"


def _split_header(line: str, sep: str) -> list[str]:
    return next(csv.reader([line], delimiter=sep), [])


def sniff(path: Path | str) -> CsvFile:
    """Encoding, separator, header, line ending and trailing blank lines of a CSV file.

    Raises ``ValueError`` for an empty file, an Excel workbook, a binary file or a header that
    names a column twice.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        size = fh.seek(0, 2)
        fh.seek(max(0, size - HEAD_BYTES) & ~1)
        tail = fh.read()
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ValueError(f"{path.name} ({path}) is an Excel workbook, not CSV text: open it in Excel and "
                         f"save it as 'CSV UTF-8 (Comma delimited) (*.csv)'")
    notes = []
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        encoding = "utf-16"
    elif b"\x00" in head[:4096]:
        sample = head[:4096]
        if sample[1::2].count(0) > len(sample) // 4 and sample[0::2].count(0) == 0:
            encoding = "utf-16-le"
        elif sample[0::2].count(0) > len(sample) // 4 and sample[1::2].count(0) == 0:
            encoding = "utf-16-be"
        else:
            raise ValueError(f"{path.name} ({path}) contains NUL bytes: it is not a CSV text file")
    elif head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    else:
        encoding = "utf-8"
    if encoding.startswith("utf-16"):
        notes.append("it is UTF-16 text (as Excel's 'Unicode Text' saves it); it was converted to UTF-8")
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if not text.strip():
        raise ValueError(f"{path.name} is empty (no header line)")
    end = re.search(r"\r\n|\r|\n", text)
    newline = end.group(0) if end else "\n"
    if newline == "\r":
        notes.append("its lines end in CR only (old Mac text); they were read as line ends")
    header_line = text[:end.start()] if end else text
    best = max(SEPARATORS, key=lambda s: len(_split_header(header_line, s)))  # ties: the earlier, ","
    separator = best if len(_split_header(header_line, best)) > 1 else ","
    if separator != ",":
        notes.append(f"its fields are separated by {SEPARATOR_NAMES[separator]}")
    names, seen = [], {}
    for i, raw in enumerate(_split_header(header_line, separator)):
        name = raw.strip().lstrip("\ufeff").strip()
        if not name:
            name = f"_unnamed_{i + 1}"
        elif name in seen:
            raise ValueError(f"{path.name} ({path}): column {name!r} appears twice in the header (columns "
                             f"{seen[name] + 1} and {i + 1}); remove or rename one of them")
        seen[name] = i
        names.append(name)
    tail_text = tail.decode(encoding if encoding != "utf-16" else "utf-16-le" if head[:2] == codecs.BOM_UTF16_LE
                            else "utf-16-be", errors="replace")
    lines = re.split(r"\r\n|\r|\n", tail_text)
    if lines and lines[-1] == "":
        lines.pop()  # the text after the last line end is not a line
    trailing = 0
    for line in reversed(lines[1:]):  # lines[0] may be cut
        if line.strip(" \t\"" + separator) == "":
            trailing += 1
        else:
            break
    return CsvFile(path, encoding, separator, names, newline, trailing, notes)


# ----------------------------------------------------------------- encoding --
class NotUtf8(Exception):
    """polars met bytes that are not UTF-8 in a file :func:`sniff` took for UTF-8 (then try
    :func:`windows_1252`)."""


def is_utf8_error(exc: Exception) -> bool:
    """Whether a polars error is about text that is not UTF-8."""
    msg = str(exc).lower()
    return "utf-8" in msg or "utf8" in msg


def windows_1252(csvf: CsvFile) -> CsvFile:
    """The file read as Windows-1252 when its non-UTF-8 lines are that and no line has UTF-8
    multi-byte text; else ``ValueError`` naming the first bad line."""
    first, count, utf8_line = None, 0, None
    with open(csvf.path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            if raw.isascii():
                continue
            try:
                raw.decode("utf-8")
                utf8_line = utf8_line or i
            except UnicodeDecodeError:
                count += 1
                if first is None:
                    first = (i, raw)
                try:
                    raw.decode("cp1252")
                except UnicodeDecodeError:
                    raise ValueError(f"{csvf.name}: line {i} has bytes that are neither UTF-8 nor Windows-1252 "
                                     f"text; save the file as 'CSV UTF-8'") from None
    if first is None:
        raise ValueError(f"{csvf.name}: polars found text that is not UTF-8 but no line has such bytes")
    if utf8_line is not None:
        raise ValueError(f"{csvf.name}: line {first[0]} is not UTF-8 text while line {utf8_line} is: the file "
                         f"mixes two encodings; save it again as 'CSV UTF-8'")
    text = first[1].decode("cp1252").strip()
    at = next(i for i, ch in enumerate(text) if ord(ch) > 127)
    snippet = text[max(0, at - 30):at + 30]
    notes = csvf.notes + [f"it is not UTF-8: it was read as Windows-1252, the encoding of Excel's 'CSV (Comma "
                          f"delimited)' ({count} line(s) have such characters, the first is line {first[0]}: "
                          f"{snippet!r}); if that text looks wrong, save the file as 'CSV UTF-8'"]
    return replace(csvf, encoding="cp1252", notes=notes)


@contextmanager
def utf8_source(csvf: CsvFile) -> Iterator[Path]:
    """The file itself, or a temporary UTF-8 copy (same lines) when polars cannot read it as it is."""
    if not csvf.needs_copy:
        yield csvf.path
        return
    with tempfile.TemporaryDirectory(prefix="hm_csv_") as tmp:
        dst = Path(tmp) / csvf.path.name
        try:
            with open(csvf.path, "r", encoding=csvf.encoding, newline=None if csvf.newline == "\r" else "") as src, \
                    open(dst, "w", encoding="utf-8", newline="") as out:
                while chunk := src.read(1 << 22):
                    out.write(chunk)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{csvf.name} cannot be read as {csvf.encoding} text ({exc.reason} at byte "
                             f"{exc.start} of a block); save it as 'CSV UTF-8'") from None
        yield dst
