"""Entry point of the one-file build. The SIP worker (checks/sip/worker.py) is the same binary
started with a marker argument, because a frozen program has no `python -m`."""

import sys

from checks.sip.worker import FROZEN_WORKER_ARG

if sys.argv[1:2] == [FROZEN_WORKER_ARG]:
    from checks.sip.worker import main as worker_main

    worker_main()
else:
    from diag.__main__ import run

    run()
