"""Checkpoints from the previous lock (quantgate.paths.previous, quantgate.paths.store): a bump's
base keeps its round trips' checkpoints under its stack's key; the candidate loads them, and one it
cannot read is a finding of its own in `quantgate compare`."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from quantgate.paths.store import MANIFEST, find, keep, stack_key

from .conftest import REPO, planted_path_run


def _saved(folder: Path) -> Path:
    (folder / "transformer").mkdir(parents=True)
    (folder / "transformer" / "model.safetensors").write_bytes(b"weights")
    return folder


def test_the_store_keys_checkpoints_by_stack_and_never_overwrites_one(tmp_path):
    old, new = {"torch": "2.13.0", "diffusers": "0.42.1"}, {"torch": "2.13.0", "diffusers": "0.43.0"}
    assert stack_key(old) != stack_key(new) and stack_key(old) == stack_key(dict(reversed(old.items())))
    image = np.zeros((4, 4, 3), np.uint8)
    kept = keep(tmp_path / "store", "m-c-cpu", _saved(tmp_path / "a"), old, {"transformer": {"bytes": 7}}, {"fox-s0": image})
    assert kept == tmp_path / "store" / stack_key(old) / "m-c-cpu" and (kept / MANIFEST).is_file()
    assert keep(tmp_path / "store", "m-c-cpu", _saved(tmp_path / "b"), old, {}, {}) is None     # the first one stays
    keep(tmp_path / "store", "m-c-cpu", _saved(tmp_path / "c"), new, {"transformer": {"bytes": 7}}, {"fox-s0": image})
    folder, manifest = find(tmp_path / "store", "m-c-cpu", new)          # another stack's before its own
    assert manifest["stack"] == stack_key(old) and (folder / "images" / "fox-s0.png").is_file()
    assert find(tmp_path / "store", "other-case", new) is None


def test_a_candidate_that_cannot_read_the_bases_checkpoint_fails_and_compare_names_it(planted_paths, tmp_path_factory,
                                                                                       shared_cache):
    """The base is the planted paths run (its round trips kept with --qg-checkpoints-out); the
    candidate reads them with --qg-checkpoints-in, and its reader cuts quanto int8's files short
    (what a release that cannot read the old format meets)."""
    _, base, _ = planted_paths
    assert base["torchao-float8wo"]["tests"]["test_previous_locks_checkpoint_makes_the_base_images"] == "skipped"
    kept = Path(base["torchao-float8wo"]["paths"]["roundtrip"]["kept"])
    store, base_results = kept.parents[1], kept.parents[2] / "results"
    root = tmp_path_factory.mktemp("candidate")
    stdout, cand, _ = planted_path_run(root, shared_cache, "previous", ("torchao-float8wo", "quanto-int8"),
                                       "quanto-int8=unreadable", extra_args=("--qg-checkpoints-in", str(store)))
    assert {t: o for t, o in cand["torchao-float8wo"]["tests"].items() if "previous" in t} == {
        "test_previous_locks_checkpoint_loads_with_its_weight_bytes": "passed",
        "test_previous_locks_checkpoint_makes_the_base_images": "passed"}, stdout[-3000:]
    assert "Unable to load weights from checkpoint file" in cand["quanto-int8"]["paths"]["previous"]["error"]
    done = subprocess.run([sys.executable, "-m", "quantgate", "compare", str(base_results), str(root / "results")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if "previous lock's checkpoint" in line]
    assert len(lines) == 1 and "tiny-flux-quanto-int8-cpu" in lines[0] and "Unable to load weights" in lines[0], done.stdout

