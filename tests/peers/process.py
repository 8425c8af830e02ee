"""Start a daemon, wait until it is ready, stop it by PID; plus readiness checks and free ports."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

ReadyCheck = Callable[[], bool]

LOG_TAIL_LINES = 20
STOP_GRACE_S = 3.0
# Below the kernel's ephemeral range (32768-60999), so no client socket can take a port we picked.
PORT_RANGE = (20000, 32000)
# sockaddr_un.sun_path is 108 bytes including the trailing NUL.
UNIX_PATH_MAX = 107

_CLONE_NEWNET = 0x40000000


class PeerStartError(RuntimeError):
    """A peer could not be started or did not become ready."""


def netns_prefix(netns: str | None) -> list[str]:
    """The argv prefix that runs a command inside network namespace ``netns`` (or nothing)."""
    return ["ip", "netns", "exec", netns] if netns else []


def check_unix_path(path: Path) -> Path:
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise ValueError(f"unix socket path is longer than {UNIX_PATH_MAX} bytes: {path}")
    return path


def socket_in_netns(
    netns: str | None, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM
) -> socket.socket:
    """A socket created inside ``netns``; it stays in that namespace wherever it is used.

    setns() changes the namespace of the calling thread only, so a throw-away thread does it.
    """
    if netns is None:
        return socket.socket(family, kind)
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def create() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{netns}", "rb") as ns_file:
                if libc.setns(ns_file.fileno(), _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            made.append(socket.socket(family, kind))
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)

    worker = threading.Thread(target=create, name=f"setns-{netns}")
    worker.start()
    worker.join()
    if failed:
        raise failed[0]
    return made[0]


def _can_bind(host: str, port: int, kind: int, netns: str | None) -> bool:
    with socket_in_netns(netns, socket.AF_INET, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(
    hosts: Iterable[str] = ("127.0.0.1",),
    kinds: Iterable[str] = ("udp", "tcp"),
    span: int = 1,
    netns: str | None = None,
) -> int:
    """A random port P such that P .. P+span-1 can be bound on every host for every kind."""
    host_list = list(hosts)
    sock_kinds = [{"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}[k] for k in kinds]
    for _ in range(200):
        port = random.randrange(PORT_RANGE[0], PORT_RANGE[1] - span)
        if all(
            _can_bind(host, p, kind, netns)
            for p in range(port, port + span)
            for host in host_list
            for kind in sock_kinds
        ):
            return port
    raise PeerStartError(f"no free port block of {span} on {host_list} in {PORT_RANGE}")


def tcp_accepts(host: str, port: int, netns: str | None = None) -> ReadyCheck:
    def check() -> bool:
        with socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            try:
                sock.connect((host, port))
            except OSError:
                return False
        return True

    return check


def udp_answers(
    host: str,
    port: int,
    payload: Callable[[tuple[str, int]], bytes],
    accept: Callable[[bytes], bool],
    netns: str | None = None,
    timeout: float = 0.3,
) -> ReadyCheck:
    """Send ``payload(local_address)`` and pass if an answer arrives that ``accept`` likes."""

    def check() -> bool:
        with socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect((host, port))
                sock.send(payload(sock.getsockname()))
                return accept(sock.recv(65535))
            except OSError:  # includes timeouts and ICMP port unreachable
                return False

    return check


def path_exists(path: Path) -> ReadyCheck:
    return path.exists


def all_of(*checks: ReadyCheck) -> ReadyCheck:
    return lambda: all(check() for check in checks)


class Daemon:
    """One long-running command with its output in ``log_dir/<name>.log``.

    The child gets its own session, so stop() can also clear any children it leaves behind.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        *,
        netns: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [*netns_prefix(netns), *argv]
        self.netns = netns
        self.log_path = log_dir / f"{name}.log"
        self._env = {**os.environ, **(env or {})}
        self._cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, ready: ReadyCheck, timeout: float = 10.0) -> Daemon:
        """Start the command and poll ``ready`` until it passes; stop and raise on failure."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._env,
                    cwd=self._cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise PeerStartError(
                    f"{self.name}: cannot run {shlex.join(self.argv)}: {exc}"
                ) from exc
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise PeerStartError(self._failure("exited during start-up"))
            try:
                if ready():
                    return self
            except Exception as exc:
                self.stop()
                raise PeerStartError(self._failure(f"readiness check raised {exc!r}")) from exc
            if time.monotonic() >= deadline:
                self.stop()
                raise PeerStartError(self._failure(f"not ready after {timeout:.1f} s, stopped it"))
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        """Exit code once the process ends; ``subprocess.TimeoutExpired`` if it does not."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc.wait(timeout)

    def stop(self) -> int | None:
        """TERM the PID, KILL it after 3 s, reap it; the exit code (None if never started)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Children left in the daemon's own session (none expected) must not outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _failure(self, what: str) -> str:
        return (
            f"{self.name} {what}\n"
            f"command: {shlex.join(self.argv)}\n"
            f"exit code: {self.returncode}\n"
            f"last {LOG_TAIL_LINES} lines of {self.log_path}:\n{self.log_tail()}"
        )

    def __enter__(self) -> Daemon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
