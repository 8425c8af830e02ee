"""The encoding of a CSV export (UTF-8, Windows-1252 or UTF-16), and a UTF-8 copy of one
that is not UTF-8."""

from __future__ import annotations

import codecs
import gzip
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from diag.lifecycle import signals_deferred


def read_head(path: Path, gzipped: bool, size: int) -> bytes | None:
    """The first `size` bytes of the file (decompressed), or None if they cannot be read."""
    try:
        with gzip.open(path, "rb") if gzipped else path.open("rb") as f:
            return f.read(size)
    except (OSError, EOFError):
        return None


# A CSV export that is not UTF-8 is read as UTF-8 where it is, and as Windows-1252 (what Excel
# and most Windows tools write) where it is not; one with a UTF-16 byte order mark (Excel's
# "Unicode Text") as UTF-16. DuckDB's reader has neither built in (its Latin-1 refuses
# 0x80-0x9F, where Windows-1252 keeps its dashes, quotes and euro sign), so such a file is read
# from a UTF-8 copy, made in chunks and deleted as soon as DuckDB has read it.
HEAD_BYTES = 1 << 20  # the part of the file whose bytes decide the encoding up front
CHUNK = 1 << 23


def _cp1252_fallback(err: UnicodeError) -> tuple[str, int]:
    """Decoding error handler: the bytes that are not UTF-8, read as Windows-1252."""
    assert isinstance(err, UnicodeDecodeError)
    return bytes(err.object[err.start : err.end]).decode("cp1252", "replace"), err.end


codecs.register_error("sipdiag-cp1252", _cp1252_fallback)


@contextmanager
def utf8_copy(path: Path, gzipped: bool, encoding: str) -> Iterator[Path]:
    """A temporary UTF-8 copy of the file, line for line the same (line numbers hold); bytes
    that mean nothing in either encoding become U+FFFD."""
    fd, name = tempfile.mkstemp(prefix="sipdiag-export-", suffix=".csv")
    try:
        decoder = (
            codecs.getincrementaldecoder("utf-16")("replace")
            if encoding == "utf-16"
            else codecs.getincrementaldecoder("utf-8")("sipdiag-cp1252")
        )
        with os.fdopen(fd, "wb") as out, gzip.open(path) if gzipped else path.open("rb") as f:
            while chunk := f.read(CHUNK):
                out.write(decoder.decode(chunk).encode("utf-8"))
            out.write(decoder.decode(b"", final=True).encode("utf-8"))
        yield Path(name)
    finally:
        with signals_deferred():  # a Ctrl-C now must not keep the copy from going
            os.unlink(name)


def head_encoding(path: Path, gzipped: bool) -> str:
    """ "utf-16" after a UTF-16 byte order mark; else "utf-8" when the file's first MiB
    decodes as UTF-8, "cp1252" when it does not."""
    head = read_head(path, gzipped, HEAD_BYTES)
    if head is None:
        return "utf-8"  # DuckDB's reader then says what is wrong with the file
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.isascii():
        return "utf-8"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"
