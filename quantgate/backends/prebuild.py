"""Backend extensions built in the background while the first cases run.

optimum-quanto compiles a C++ extension for its CPU int4 kernels the first time a process uses it:
about 30 s on 2 cores, once per environment (it is kept in the package's folder). A CPU case runs
on one thread (models.toml's cpu_threads), so on a 2-core machine a core is free while the first
cases run. quantgate starts that build there when a session's selection has a case that needs it
and the build is not in the environment yet. A case that needs the extension before the build is
done waits for it (torch's extension loader holds a lock in the build folder), and a build that
fails is left to that case, which fails with the library's own message. Measured from a fresh
clone (2026-12-01, 2-core AMD EPYC): the quanto int4 case took 32.5 s with the build in it.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

from quantgate.matrix import Case

QUANTO_CPP = "from optimum.quanto.library.extensions.cpp import ext; ext.lib"


def _quanto_cpp_built() -> bool:
    """Whether optimum-quanto's CPU extension is already built here (looked up without importing it)."""
    spec = importlib.util.find_spec("optimum")
    for root in (spec.submodule_search_locations or []) if spec else []:
        build = Path(root) / "quanto" / "library" / "extensions" / "cpp" / "build"
        if (build / "quanto_cpp.so").is_file() and (build / "pytorch_version.txt").is_file():
            return True
    return False


def needs_quanto_cpp(case: Case) -> bool:
    from quantgate.backends import backend

    return backend(case.config.backend).needs_prebuild(case)


def interruptible() -> None:
    """In the build's process, before Python starts: SIGINT back to its default, so that Python turns
    it into KeyboardInterrupt (and the build releases its lock). A session started in the background
    (`nohup`, `cmd &` in a script) hands its children SIGINT ignored, and Python keeps it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(cases: list[Case]) -> subprocess.Popen | None:
    """Start the builds the cases need and the environment lacks; the process, or None."""
    if not any(needs_quanto_cpp(c) for c in cases) or _quanto_cpp_built():
        return None
    try:
        return subprocess.Popen([sys.executable, "-c", QUANTO_CPP], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=interruptible)
    except OSError:
        return None           # the case builds it itself


def finish(proc: subprocess.Popen | None, wait_s: float = 120.0) -> None:
    """At the session's end: let a build still running finish (a killed build would leave torch's
    lock file in the build folder, and every later load would wait on it); past `wait_s` it is
    interrupted, which releases the lock."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
