"""Stream the items of one huge JSON document, split across workers by byte range.

VisCoT's LLaVA file and TallyQA are one JSON array; GQA's question file is one JSON
object of id -> record. Neither fits a line reader, and ``json.load`` on a gigabyte is
out of the question. :class:`JsonItemsSource` reads items one by one and claims each by
the byte offset where it starts, so Beam can split a file into ranges: a range that
starts mid-file skips to the first item that starts inside it. That item is found by
trying candidate starts (a ``{`` after ``[`` or ``,``; for objects, ``"key": {``) and
keeping the first one that parses as a dict with the record's required keys. A nested
dict never has them, and a brace inside a string never parses as a record.

Malformed input becomes a :class:`JsonError` item (bad_json, truncated_json,
bad_encoding) rather than an exception. The reader then skips to the next item it can
parse. A UTF-8 byte order mark at the start of a file is skipped.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterator

from apache_beam.io.filebasedsource import FileBasedSource

CHUNK = 1 << 22
WS = b" \t\r\n"
BOM = b"\xef\xbb\xbf"
_DECODER = json.JSONDecoder()
_OBJECT_CANDIDATE = re.compile(r'[,{]\s*("(?:[^"\\\n]|\\.){0,256}")\s*:\s*\{')


@dataclass
class JsonError:
    reason: str  # bad_json | truncated_json | item_too_large | bad_encoding
    detail: str


class BadEncoding(ValueError):
    """Bytes that are not UTF-8, or escapes that make no valid text (a lone surrogate)."""


def check_text(value, raw: bytes | str) -> None:
    """Raise BadEncoding if ``value`` (parsed from ``raw``) holds a lone surrogate from a ``\\u`` escape."""
    escaped = "\\u" in raw if isinstance(raw, str) else b"\\u" in raw
    if escaped:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as err:
            raise BadEncoding(f"a \\u escape makes invalid text: {err.reason}") from None


def decode_json(data: bytes):
    """The JSON value of UTF-8 ``data``; BadEncoding if the bytes or escapes are not valid text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadEncoding(f"not UTF-8: byte 0x{data[err.start]:02x} at {err.start}") from None
    value = json.loads(text)
    check_text(value, text)
    return value


class _Undecodable(Exception):
    """A complete JSON value whose text is not valid; ``value`` is read with replacement characters."""

    def __init__(self, value, end: int, err: BadEncoding):
        super().__init__(str(err))
        self.value, self.end = value, end


class _NeedMore(Exception):
    """The buffer ran out and the file has nothing more."""


class _TooLarge(Exception):
    """One item is bigger than ``max_item_bytes``: malformed input, most likely."""


class _Buffer:
    """A growing window on the file; ``text`` is its latin-1 view (1 char = 1 byte)."""

    def __init__(self, handle, base: int, max_item_bytes: int):
        self.handle, self.base, self.max_item = handle, base, max_item_bytes
        self.data, self.text, self.eof = b"", "", False

    def fill(self) -> None:
        chunk = self.handle.read(CHUNK)
        if not chunk:
            self.eof = True
            raise _NeedMore
        self.data += chunk
        self.text = self.data.decode("latin-1")

    def drop_before(self, pos: int) -> int:
        """Forget bytes before ``pos``; returns the new local position."""
        if pos > CHUNK:
            self.data, self.text, self.base = self.data[pos:], self.text[pos:], self.base + pos
            return 0
        return pos

    def skip_ws(self, pos: int) -> int:
        while True:
            while pos < len(self.data) and self.data[pos] in WS:
                pos += 1
            if pos < len(self.data):
                return pos
            self.fill()

    def parse(self, pos: int):
        """(value, end) of the JSON value at ``pos``; decoded from the raw bytes (UTF-8).

        Raises _Undecodable for a complete value whose bytes or escapes are not valid text.
        """
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, pos)  # latin-1 keeps byte offsets
                raw = self.data[pos:end]
                try:
                    if raw.isascii():  # pure ASCII: the latin-1 parse is already exact
                        check_text(value, raw)
                        return value, end
                    return decode_json(raw), end  # UTF-8 inside: decode properly
                except BadEncoding as bad:
                    raise _Undecodable(json.loads(raw.decode("utf-8", "replace")), end, bad) from None
            except json.JSONDecodeError as err:
                incomplete = err.pos >= len(self.text) - 1 or err.msg.startswith("Unterminated string")
                if not incomplete or self.eof:
                    raise
                if len(self.data) - pos > self.max_item:
                    raise _TooLarge(f"item larger than {self.max_item} bytes") from err
                try:
                    self.fill()
                except _NeedMore:
                    raise err from None


class JsonItemsSource(FileBasedSource):
    """Items of a top-level JSON array, or ``[key, value]`` members of a top-level object.

    Yields ``(file_name, offset, item)``: ``item`` is the array element, ``[key, value]``
    for objects, or a :class:`JsonError`. Only dict items with all ``required`` keys
    count as items when re-synchronising mid-file.
    """

    def __init__(self, pattern, container: str, required: tuple[str, ...], max_item_bytes: int = 1 << 26):
        super().__init__(pattern)
        if container not in ("array", "object"):
            raise ValueError("container must be 'array' or 'object'")
        self.container, self.required, self.max_item_bytes = container, tuple(required), max_item_bytes

    def read_records(self, file_name, range_tracker):
        start = range_tracker.start_position()
        with self.open_file(file_name) as handle:
            back = min(start, 1024)  # look behind the range start for the delimiter
            if start:
                handle.seek(start - back)
            buf = _Buffer(handle, start - back, self.max_item_bytes)
            for offset, item in self._items(buf, back if start else None):
                if not range_tracker.try_claim(offset):
                    return
                yield file_name, offset, item

    # -- scanning ------------------------------------------------------------------------

    def _is_record(self, value) -> bool:
        return isinstance(value, dict) and all(k in value for k in self.required)

    def _item_at(self, buf: _Buffer, pos: int):
        """Parse the item starting at ``pos``: (item, end)."""
        if self.container == "array":
            return buf.parse(pos)
        bad = None
        try:
            key, end = buf.parse(pos)
        except _Undecodable as err:
            bad, key, end = err, err.value, err.end
        end = buf.skip_ws(end)
        if buf.data[end:end + 1] != b":":
            raise json.JSONDecodeError("Expecting ':' delimiter", buf.text, end)
        try:
            value, end = buf.parse(buf.skip_ws(end + 1))
        except _Undecodable as err:
            bad, value, end = err, err.value, err.end
        if bad is not None:
            raise _Undecodable([key, value], end, BadEncoding(str(bad)))
        return [key, value], end

    def _candidates(self, buf: _Buffer, pos: int) -> Iterator[int]:
        """Positions >= ``pos`` where a top-level item may start."""
        scan = max(0, pos - 1024)  # the delimiter before an item may lie before pos
        while True:
            if self.container == "object":
                match = _OBJECT_CANDIDATE.search(buf.text, scan)
                found = match.start(1) if match else -1
            else:
                found = buf.data.find(b"{", scan)
                if found >= 0:
                    j = found - 1
                    while j >= 0 and buf.data[j] in WS:
                        j -= 1
                    if not (j >= 0 and buf.data[j:j + 1] in (b",", b"[")):
                        scan = found + 1
                        continue
            if found >= 0:
                scan = found + 1
                if found >= pos:
                    yield found
                continue
            scan = max(scan, len(buf.data) - 300)  # a candidate may straddle the chunk edge
            buf.fill()

    def _resync(self, buf: _Buffer, pos: int) -> int | None:
        """The first position >= pos where a real record starts, or None at end of file."""
        try:
            for cand in self._candidates(buf, pos):
                try:
                    item, _ = self._item_at(buf, cand)
                except _Undecodable as err:
                    item = err.value  # still a record start: _items reports it
                except (json.JSONDecodeError, _TooLarge):
                    continue
                if self._is_record(item[1] if self.container == "object" else item):
                    return cand
        except _NeedMore:
            return None

    def _opening(self, buf: _Buffer) -> int:
        pos = buf.skip_ws(0)
        if buf.data.startswith(BOM):
            pos = buf.skip_ws(len(BOM))
        opener = b"[" if self.container == "array" else b"{"
        if buf.data[pos:pos + 1] != opener:
            raise json.JSONDecodeError(f"a JSON {self.container} must start with {opener.decode()}", buf.text, pos)
        return pos + 1

    def _items(self, buf: _Buffer, resync_from: int | None):
        closer = b"]" if self.container == "array" else b"}"
        try:
            pos = self._opening(buf) if resync_from is None else self._resync(buf, resync_from)
        except (json.JSONDecodeError, _NeedMore) as err:
            yield buf.base, JsonError("bad_json", f"not a JSON {self.container}: {err}")
            return
        while pos is not None:
            try:
                pos = buf.drop_before(pos)
                pos = buf.skip_ws(pos)
                if buf.data[pos:pos + 1] == b",":
                    pos = buf.skip_ws(pos + 1)
                if buf.data[pos:pos + 1] == closer:
                    return
                item, end = self._item_at(buf, pos)
            except _NeedMore:
                yield buf.base + pos, JsonError("truncated_json", "the file ends inside the top-level "
                                                                  f"{self.container}")
                return
            except _Undecodable as err:
                yield buf.base + pos, JsonError("bad_encoding", f"at byte {buf.base + pos}: {err}"[:300])
                pos = err.end
                continue
            except (json.JSONDecodeError, _TooLarge) as err:
                reason = "item_too_large" if isinstance(err, _TooLarge) else (
                    "truncated_json" if buf.eof else "bad_json")
                yield buf.base + pos, JsonError(reason, f"at byte {buf.base + pos}: {err}"[:300])
                if buf.eof:
                    return
                pos = self._resync(buf, pos + 1)
                continue
            yield buf.base + pos, item
            pos = end
