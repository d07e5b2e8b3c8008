"""A backend's extension (optimum-quanto's CPU int4 kernels) is built in the background while the first
cases run, only when a selected case needs it and the environment lacks it, and a build is never cut off
mid-way. What to build and whether it is built is the backend's to say (Backend.prebuild_code,
needs_prebuild, prebuilt): a second backend with an extension starts its own build, not quanto's."""

import subprocess
import sys
import time

from quantgate.backends import backend, prebuild
from quantgate.matrix import build_cases, load_matrix, load_models

from .conftest import harness_dirs


def _cases(*ids):
    fixtures = harness_dirs()[0]
    models = load_models(fixtures)
    return [c for c in build_cases(models, load_matrix(fixtures, models))
            if c.config.id in ids and c.device == "cpu"]


def test_only_a_quanto_int4_cpu_case_needs_the_extension():
    needing = [c.config.id for c in _cases("quanto-int4", "quanto-int8", "bf16")
               if backend(c.config.backend).needs_prebuild(c)]
    assert needing == ["quanto-int4"]
    assert prebuild.start(_cases("bf16", "quanto-int8")) == []


def test_nothing_starts_where_the_extension_is_built(monkeypatch):
    monkeypatch.setattr(type(backend("quanto")), "prebuilt", lambda self: True)
    assert prebuild.start(_cases("quanto-int4")) == []


def test_a_missing_build_starts_in_the_background_and_the_session_waits_for_it(monkeypatch):
    monkeypatch.setattr(type(backend("quanto")), "prebuilt", lambda self: False)
    monkeypatch.setattr(type(backend("quanto")), "prebuild_code", "import time; time.sleep(1)")
    started = time.monotonic()
    procs = prebuild.start(_cases("quanto-int4"))
    assert len(procs) == 1 and procs[0].poll() is None       # running beside the session
    prebuild.finish(procs)
    assert procs[0].returncode == 0 and time.monotonic() - started >= 1    # finished, not killed


def test_each_backend_builds_its_own_extension_once(monkeypatch):
    """Two backends that declare builds get one process each, running their own code."""
    monkeypatch.setattr(type(backend("quanto")), "prebuilt", lambda self: False)
    monkeypatch.setattr(type(backend("quanto")), "prebuild_code", "raise SystemExit(11)")
    sdnq = type(backend("sdnq"))
    monkeypatch.setattr(sdnq, "prebuild_code", "raise SystemExit(12)", raising=False)
    monkeypatch.setattr(sdnq, "prebuilt", lambda self: False)
    monkeypatch.setattr(sdnq, "needs_prebuild", lambda self, case: True)
    procs = prebuild.start(_cases("quanto-int4", "quanto-int8", "sdnq-int8", "sdnq-uint4"))
    prebuild.finish(procs)
    assert sorted(p.returncode for p in procs) == [11, 12]


def test_a_build_past_its_wait_is_interrupted_so_it_can_release_its_lock():
    code = "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    raise SystemExit(3)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], preexec_fn=prebuild.interruptible)   # as start() does
    time.sleep(2.0)                                              # past the child's start-up
    prebuild.finish([proc], wait_s=0.5)
    assert proc.returncode == 3                                  # its own clean-up ran (SIGINT, not SIGKILL)
