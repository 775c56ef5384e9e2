"""`cot-factory demo`: the Space app as a child process that never outlives its launcher.

SIGINT and SIGTERM sent to the launcher are passed on to the app; if it does not stop within a
few seconds it is killed, so the port is free again when the launcher returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_SECONDS = 5.0


class DemoError(RuntimeError):
    """A folder that holds no Space app."""


def run_demo(folder: Path, port: int) -> int:
    """Serve the Space folder on 127.0.0.1:`port` until the app exits or we are told to stop."""
    if not (folder / "app.py").is_file():
        raise DemoError(f"{folder} is neither a recipe nor a Space folder (no app.py)")
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port)}
    child = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=env)
    stopping = []

    def stop(signum, _frame) -> None:
        stopping.append(signum)
        child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        deadline = None
        while child.poll() is None:
            if stopping and deadline is None:
                deadline = time.monotonic() + GRACE_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.kill()
            child.wait()
    return 0 if stopping else child.returncode
