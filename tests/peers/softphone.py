"""The agent's own softphone: a default-configured pjsua2 app registered in another process.

Run as a script: ``python softphone.py REGISTRAR_URI USER PASSWORD``. It prints "registered"
once the registrar accepted it, keeps its binding until stdin closes, then un-registers.
Tests use it to prove sipdiag never touches the agent's binding.
"""

from __future__ import annotations

import select
import sys
import time
from typing import Any


def main() -> None:
    import pjsua2 as pj

    registrar, user, password = sys.argv[1:4]
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    ep.libInit(cfg)
    tc = pj.TransportConfig()
    tc.port = 0
    tc.boundAddress = "127.0.0.1"
    transport = pj.PJSIP_TRANSPORT_TCP if "transport=tcp" in registrar else pj.PJSIP_TRANSPORT_UDP
    ep.transportCreate(transport, tc)
    ep.libStart()
    state: list[int] = []

    class Account(pj.Account):
        def onRegState(self, prm: Any) -> None:  # noqa: N802 - pjsua2 callback name
            state.append(prm.code)
            if prm.code // 100 == 2 and len(state) == 1:
                sys.stdout.write("registered\n")
                sys.stdout.flush()
            elif len(state) == 1:
                sys.stdout.write(f"failed {prm.code}\n")
                sys.stdout.flush()

    acc_cfg = pj.AccountConfig()  # defaults, as a softphone ships: SIP outbound with +sip.instance
    acc_cfg.idUri = f"sip:{user}@127.0.0.1"
    acc_cfg.regConfig.registrarUri = registrar
    acc_cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
    acc = Account()
    acc.create(acc_cfg)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        ep.libHandleEvents(50)
        if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1):
            break
    acc.shutdown()
    del acc
    ep.libDestroy()


if __name__ == "__main__":
    main()
