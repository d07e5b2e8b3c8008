"""optimum-quanto's CPU extension is built in the background while the first cases run, only when a
selected case needs it and the environment lacks it, and a build is never cut off mid-way."""

import subprocess
import sys
import time

from quantgate.backends import prebuild
from quantgate.matrix import build_cases, load_matrix, load_models

from .conftest import harness_dirs


def _cases(*ids):
    fixtures = harness_dirs()[0]
    models = load_models(fixtures)
    return [c for c in build_cases(models, load_matrix(fixtures, models))
            if c.config.id in ids and c.device == "cpu"]


def test_only_a_quanto_int4_cpu_case_needs_the_extension():
    needing = [c.config.id for c in _cases("quanto-int4", "quanto-int8", "bf16") if prebuild.needs_quanto_cpp(c)]
    assert needing == ["quanto-int4"]
    assert prebuild.start(_cases("bf16", "quanto-int8")) is None


def test_nothing_starts_where_the_extension_is_built(monkeypatch):
    monkeypatch.setattr(prebuild, "_quanto_cpp_built", lambda: True)
    assert prebuild.start(_cases("quanto-int4")) is None


def test_a_missing_build_starts_in_the_background_and_the_session_waits_for_it(monkeypatch):
    monkeypatch.setattr(prebuild, "_quanto_cpp_built", lambda: False)
    monkeypatch.setattr(prebuild, "QUANTO_CPP", "import time; time.sleep(1)")
    started = time.monotonic()
    proc = prebuild.start(_cases("quanto-int4"))
    assert proc is not None and proc.poll() is None            # running beside the session
    prebuild.finish(proc)
    assert proc.returncode == 0 and time.monotonic() - started >= 1    # finished, not killed


def test_a_build_past_its_wait_is_interrupted_so_it_can_release_its_lock():
    code = "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    raise SystemExit(3)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], preexec_fn=prebuild.interruptible)   # as start() does
    time.sleep(2.0)                                              # past the child's start-up
    prebuild.finish(proc, wait_s=0.5)
    assert proc.returncode == 3                                  # its own clean-up ran (SIGINT, not SIGKILL)
