"""A real headless Debian `chromium` with a fresh profile: driven through the DevTools protocol
(Chromium, for the browser-permission tests) or run for one action (chromium(), for the HTML
report: DOM dumps, screenshots, PDFs). Offline flags only, nothing outside loopback.

Permissions are set the way a user sets them: through the browser's own site-settings page
(chrome://settings), whose handler writes the profile's content settings. Browser.setPermission
would only add an in-memory automation override that is never saved to Preferences.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .process import Daemon, PeerStartError

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip
SETTINGS_PAGE = "chrome://settings/content/microphone"


@dataclass
class Chromium:
    user_data_dir: Path
    daemon: Daemon
    _ws: Any = None
    _next_id: int = 0
    _session: str | None = field(default=None, init=False)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False)

    @classmethod
    def start(cls, user_data_dir: Path, log_dir: Path, timeout: float = 20.0) -> Chromium:
        """A fresh profile in ``user_data_dir`` (e.g. HOME/.config/chromium); log in log_dir."""
        user_data_dir.mkdir(parents=True, exist_ok=True)
        port_file = user_data_dir / "DevToolsActivePort"
        argv = [
            "chromium", *FLAGS, f"--user-data-dir={user_data_dir}",
            "--remote-debugging-port=0", "about:blank",
        ]  # fmt: skip

        def ready() -> bool:
            return port_file.exists() and len(port_file.read_text().split()) >= 2

        daemon = Daemon("chromium", argv, log_dir, cwd=log_dir).start(ready, timeout)
        browser = cls(user_data_dir, daemon)
        port, path = port_file.read_text().split()[:2]
        from websockets.sync.client import connect

        try:
            browser._ws = browser._stack.enter_context(
                connect(f"ws://127.0.0.1:{port}{path}", proxy=None, max_size=None)
            )
        except OSError as exc:
            daemon.stop()
            raise PeerStartError(f"cannot reach chromium's DevTools at port {port}: {exc}") from exc
        return browser

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command (in the settings page's session once it is open)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self._session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        while True:
            answer = json.loads(self._ws.recv(timeout=15))
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise PeerStartError(f"DevTools {method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result

    def _settings_page(self) -> None:
        if self._session is not None:
            return
        target = self.call("Target.createTarget", url=SETTINGS_PAGE)["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = self.call(
                "Runtime.evaluate",
                expression="document.readyState === 'complete' && typeof chrome.send",
            )
            if probe.get("result", {}).get("value") == "function":
                return
            time.sleep(0.1)
        raise PeerStartError(f"{SETTINGS_PAGE} did not load")

    def set_microphone(self, origin: str, setting: str) -> None:
        """``setting``: "allow", "block" or "ask" for ``origin`` (a site exception)."""
        self._settings_page()
        self.call(
            "Runtime.evaluate",
            expression="chrome.send('setOriginPermissions', "
            f"[{json.dumps(origin)}, 'media-stream-mic', {json.dumps(setting)}])",
        )

    def set_default_microphone(self, setting: str) -> None:
        """The profile-wide default: "ask" or "block"."""
        self._settings_page()
        self.call(
            "Runtime.evaluate",
            expression="chrome.send('setDefaultValueForContentType', "
            f"['media-stream-mic', {json.dumps(setting)}])",
        )

    def preferences(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(
            (self.user_data_dir / "Default" / "Preferences").read_text()
        )
        return loaded

    @property
    def log_path(self) -> Path:
        return self.daemon.log_path

    def close(self, timeout: float = 15.0) -> None:
        """Browser.close: chromium writes Preferences on the way out, then exits."""
        if self._ws is not None:
            try:
                self.call("Browser.close")
            except Exception:  # noqa: BLE001 - the browser may drop the socket as it exits
                pass
            self._stack.close()
            self._ws = None
        try:
            self.daemon.wait(timeout)
        finally:
            self.daemon.stop()


def chromium(page: Path, work: Path, *action: str, width: int = 1280, height: int = 900) -> str:
    """Run one headless action (`--dump-dom`, `--screenshot=…`, `--print-to-pdf=…`) on a file;
    returns stdout. Raises PeerStartError with chromium's stderr when it fails."""
    exe = shutil.which("chromium")
    if exe is None:
        raise PeerStartError("chromium is not installed (apt-get install chromium)")
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    proc = subprocess.run(
        [
            exe,
            *FLAGS,
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            *action,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    if proc.returncode != 0:
        raise PeerStartError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def probe(page_html: str, script: str, work: Path, width: int) -> dict[str, Any]:
    """Render ``page_html`` with ``script`` (a <script> writing JSON into <pre id="probe">)
    added before </body> at ``width`` px; the JSON it wrote. Raises PeerStartError when
    chromium cannot run."""
    import html
    import re

    page = work / f"probe-{width}.html"
    page.write_text(page_html.replace("</body>", script + "</body>"))
    dom = chromium(page, work, "--dump-dom", width=width)
    # The last match: the script's own source also contains the marker.
    found = re.findall(r'<pre id="probe">(\{.*?)</pre>', dom, re.S)
    if not found:
        raise AssertionError(f"the probe wrote nothing: {dom[-2000:]}")
    result: dict[str, Any] = json.loads(html.unescape(found[-1]))
    return result
