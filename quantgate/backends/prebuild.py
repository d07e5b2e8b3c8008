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

A checkpoint the suite makes itself before a case can load it (AutoRound's: 27-88 s of a 2-core
CPU) is made ahead the same way: a backend says which of the selected cases can have theirs made in
the background and makes it there (`made_ahead`, `make_ahead`), one process per case, started
once the session knows its selection (after -m and -k), so that a deselected case makes nothing.
The case then finds it made, or waits for it on the checkpoint's lock; a maker that fails is left to
the case, which fails with the library's own message.
"""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

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


MADE_AHEAD = "qg_made_ahead"      # marks a maker's process (start()), which finish() does not wait for


def to_make(cases: list[Case], cache_root: Path) -> list[Case]:
    """The cases whose checkpoint their backend makes ahead and has not made yet, in the cases' order."""
    return [c for c in cases if backend(c.config.backend).made_ahead(c, cache_root)]


def _background(argv: list[str]) -> subprocess.Popen | None:
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, preexec_fn=interruptible)
    except OSError:
        return None           # the case builds or makes it itself


def start(cases: list[Case], cache_root: Path | None = None) -> list[subprocess.Popen]:
    """Start the builds the cases need and the environment lacks, and (given the cache folder) the
    checkpoints their backends make ahead; their processes."""
    procs = [_background([sys.executable, "-c", b.prebuild_code]) for b in to_build(cases)]
    for case in to_make(cases, cache_root) if cache_root is not None else []:
        with tempfile.NamedTemporaryFile("wb", suffix=".pickle", prefix="qg-make-ahead-", delete=False) as fh:
            pickle.dump((case, str(cache_root)), fh)
        maker = _background([sys.executable, "-m", "quantgate.backends.prebuild", fh.name])
        if maker is not None:
            setattr(maker, MADE_AHEAD, True)
        procs.append(maker)
    return [p for p in procs if p is not None]


def finish(procs: list[subprocess.Popen] | None, wait_s: float = 120.0) -> None:
    """At the session's end: let builds still running finish (a killed build would leave torch's
    lock file in the build folder, and every later load would wait on it); past `wait_s` one is
    interrupted, which releases the lock. A checkpoint still being made ahead belongs to no case that
    ran here (a case that needs it waits for it), so it is interrupted at once: the maker removes its
    unfinished folder and releases its lock, and the next case that needs it makes it."""
    for proc in procs or []:
        if proc.poll() is not None:
            continue
        try:
            proc.wait(timeout=0 if getattr(proc, MADE_AHEAD, False) else wait_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _make_ahead(request: Path) -> None:
    """In the background process: the case's backend makes its checkpoint."""
    case, cache_root = pickle.loads(request.read_bytes())
    request.unlink()
    backend(case.config.backend).make_ahead(case, Path(cache_root))


if __name__ == "__main__":
    _make_ahead(Path(sys.argv[1]))
