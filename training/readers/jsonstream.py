"""Stream the items of a large JSON array (top-level, or under one key of the top-level object).

Telegram exports and Blended Skill Talk files are single JSON documents that can be hundreds of
megabytes; this reads them in chunks with the standard decoder and keeps line numbers for errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from training.readers.base import DataFormatError

_WS = " \t\r\n"
_decoder = json.JSONDecoder()


class _Scanner:
    def __init__(self, path: Path, chunk_size: int) -> None:
        self.path = path
        self._file = path.open("r", encoding="utf-8-sig")  # a byte order mark is not JSON
        self._chunk = chunk_size
        self.buf = ""
        self.pos = 0
        self.line = 1  # line number at buf[0]
        self.eof = False

    def close(self) -> None:
        self._file.close()

    def here(self) -> int:
        return self.line + self.buf.count("\n", 0, self.pos)

    def error(self, reason: str, pos: int | None = None) -> DataFormatError:
        at = self.pos if pos is None else pos
        return DataFormatError(self.path, self.line + self.buf.count("\n", 0, at), reason)

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self._file.read(self._chunk)
        except UnicodeDecodeError as exc:
            raise self.error(f"not UTF-8 ({exc.reason})", len(self.buf)) from None
        if not data:
            self.eof = True
            return False
        # Drop what was consumed so memory stays at about one item plus one chunk.
        self.line += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True

    def peek(self) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str) -> str:
        ch = self.peek()
        if not ch or ch not in chars:
            found = repr(ch) if ch else "end of file"
            raise self.error(f"invalid JSON: expected one of {' '.join(chars)}, found {found}")
        self.pos += 1
        return ch

    def value(self) -> tuple[int, Any]:
        self.peek()
        start_line = self.here()
        while True:
            try:
                obj, end = _decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self._fill():
                    continue
                raise self.error(f"invalid JSON: {exc.msg}", exc.pos) from None
            if end == len(self.buf) and self._fill():
                continue  # a number cut at the chunk edge would otherwise decode short
            self.pos = end
            return start_line, obj


def _items(scanner: _Scanner) -> Iterator[tuple[int, Any]]:
    scanner.expect("[")
    if scanner.peek() == "]":
        scanner.pos += 1
        return
    while True:
        yield scanner.value()
        if scanner.expect(",]") == "]":
            return


def iter_json_array(
    path: Path, key: str | None = None, chunk_size: int = 1 << 16
) -> Iterator[tuple[str | None, int, Any]]:
    """Yield (key, line, value): with key=None the items of a top-level array; otherwise each top-level
    member of the object as (name, line, value), except that the array under `key` is yielded item by item."""
    scanner = _Scanner(path, chunk_size)
    try:
        if key is None:
            for line, item in _items(scanner):
                yield None, line, item
        else:
            scanner.expect("{")
            if scanner.peek() == "}":
                return
            while True:
                _, name = scanner.value()
                if not isinstance(name, str):
                    raise scanner.error("invalid JSON: object key must be a string")
                scanner.expect(":")
                if name == key:
                    for line, item in _items(scanner):
                        yield name, line, item
                else:
                    line, value = scanner.value()
                    yield name, line, value
                if scanner.expect(",}") == "}":
                    break
        if scanner.peek():
            raise scanner.error("invalid JSON: extra data after the document")
    finally:
        scanner.close()
