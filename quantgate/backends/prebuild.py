"""Backend extensions built in the background while the first cases run: each backend that declares
`prebuild_code` (quantgate.backends.base.Backend) says which cases need it (`needs_prebuild`) and
whether it is built already (`prebuilt`); this module starts one build per such backend.

optimum-quanto, the one built-in backend with an extension, compiles a C++ extension for its CPU
int4 kernels the first time a process uses it: about 30 s on 2 cores, once per environment (it is
kept in the package's folder). A CPU case runs on one thread (models.toml's cpu_threads), so on a
2-core machine a core is free while the first cases run. quantgate starts that build there when a
session's selection has a case that needs it and the build is not in the environment yet. A case
that needs the extension before the build is done waits for it (torch's extension loader holds a
lock in the build folder), and a build that fails is left to that case, which fails with the
library's own message. Measured from a fresh clone (2026-12-01, 2-core AMD EPYC): the quanto int4
case took 32.5 s with the build in it.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from quantgate.backends import Backend, backend
from quantgate.matrix import Case


def to_build(cases: list[Case]) -> list[Backend]:
    """The backends whose extension some of the cases need and this environment lacks, each once."""
    wanted = {c.config.backend for c in cases if backend(c.config.backend).needs_prebuild(c)}
    return [backend(name) for name in sorted(wanted) if not backend(name).prebuilt()]   # prebuilt(): no code, nothing to build


def interruptible() -> None:
    """In the build's process, before Python starts: SIGINT back to its default, so that Python turns
    it into KeyboardInterrupt (and the build releases its lock). A session started in the background
    (`nohup`, `cmd &` in a script) hands its children SIGINT ignored, and Python keeps it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(cases: list[Case]) -> list[subprocess.Popen]:
    """Start the builds the cases need and the environment lacks; their processes."""
    procs = []
    for b in to_build(cases):
        try:
            procs.append(subprocess.Popen([sys.executable, "-c", b.prebuild_code], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          preexec_fn=interruptible))
        except OSError:
            pass              # the case builds it itself
    return procs


def finish(procs: list[subprocess.Popen] | None, wait_s: float = 120.0) -> None:
    """At the session's end: let builds still running finish (a killed build would leave torch's
    lock file in the build folder, and every later load would wait on it); past `wait_s` one is
    interrupted, which releases the lock."""
    for proc in procs or []:
        if proc.poll() is not None:
            continue
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
