"""A backend's extension (optimum-quanto's CPU int4 kernels) is built in the background while the first
cases run, only when a selected case needs it and the environment lacks it, and a build is never cut off
mid-way. What to build and whether it is built is the backend's to say (Backend.prebuild_code,
needs_prebuild, prebuilt): a second backend with an extension starts its own build, not quanto's."""

import subprocess
import sys
import time
from pathlib import Path

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


def test_only_a_cpu_autoround_case_not_known_to_fail_has_its_checkpoint_made_ahead(tmp_path):
    made = [c.config.id for c in prebuild.to_make(_cases("autoround-w4a16-rtn", "autoround-w4a16-plain-rtn", "bf16",
                                                         "quanto-int8"), tmp_path)]
    assert made == ["autoround-w4a16-rtn"]          # plain-rtn is a known failure: nothing to make ahead


def test_a_checkpoint_already_made_is_not_made_again(tmp_path, monkeypatch):
    import quantgate.sources.autoround_checkpoints as checkpoints

    monkeypatch.setattr(checkpoints, "is_complete", lambda path: True)
    assert prebuild.to_make(_cases("autoround-w4a16-rtn"), tmp_path) == []


def test_a_case_made_ahead_runs_its_backends_maker_in_a_process_of_its_own(tmp_path, monkeypatch):
    """The background process gets the case itself (pickled) and the cache folder, and removes its request."""
    case = _cases("quanto-int8")[0]             # Backend.make_ahead's default does nothing: the plumbing alone
    monkeypatch.setattr(prebuild, "to_make", lambda cases, cache_root: list(cases))
    procs = prebuild.start([case], tmp_path)
    assert [p.wait(timeout=60) for p in procs] == [0]
    request = procs[0].args[-1]
    assert request.endswith(".pickle") and not Path(request).exists()


def test_the_maker_receives_the_case_and_the_cache_folder(tmp_path, monkeypatch):
    import pickle

    case = _cases("autoround-w4a16-rtn")[0]
    request = tmp_path / "request.pickle"
    request.write_bytes(pickle.dumps((case, str(tmp_path / "cache"))))
    seen = []
    monkeypatch.setattr(type(backend("autoround")), "make_ahead", lambda self, c, root: seen.append((c.id, root)))
    prebuild._make_ahead(request)
    assert seen == [(case.id, tmp_path / "cache")] and not request.exists()


def test_a_checkpoint_still_being_made_at_the_sessions_end_is_interrupted_at_once():
    """No case of the session waits for it any more (one that needed it waited on its lock): the session
    does not wait out the maker, which cleans up on SIGINT."""
    code = "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    raise SystemExit(4)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], preexec_fn=prebuild.interruptible)
    setattr(proc, prebuild.MADE_AHEAD, True)
    time.sleep(2.0)
    started = time.monotonic()
    prebuild.finish([proc], wait_s=120)
    assert proc.returncode == 4 and time.monotonic() - started < 10
