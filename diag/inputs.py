"""Reading the files a user hands sipdiag (profile, policy, saved report): only regular files,
never more than a bound, so /dev/zero, a FIFO or a huge file is a one-line usage error (exit 64)
instead of an out-of-memory crash or a hang."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from diag.errors import UsageError

PROFILE_LIMIT = 1 << 20  # 1 MiB: a profile is a few hundred bytes
POLICY_LIMIT = 32 << 20  # 32 MiB: 100,000 numbers and prefixes fit several times over
REPORT_LIMIT = 64 << 20  # 64 MiB: a report is tens of kB (the SIP trace is a separate file)


def read_input(path: Path, what: str, limit: int, hint: str) -> bytes:
    """The bytes of ``path``; UsageError when it is missing, not a regular file, or larger than
    ``limit``. Non-blocking open: a FIFO with no writer cannot hang the open itself."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise UsageError(f"{what} {path} not found", hint) from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a directory", hint) from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}", hint) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{what} {path} is not a regular file", hint)
        if info.st_size > limit:
            raise UsageError(
                f"{what} {path} is larger than {limit >> 20} MiB ({info.st_size} bytes)", hint
            )
        chunks, size = [], 0
        while True:  # the file may grow after fstat: stop one byte past the limit
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise UsageError(f"{what} {path} is larger than {limit >> 20} MiB", hint)
        return b"".join(chunks)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}", hint) from None
    finally:
        os.close(fd)
