"""The gate catches what it exists for: each planted regression fails the right test, with the
right message, and nothing else. Each test runs the gate itself in a subprocess (pytester)."""

import hashlib
import json
from dataclasses import replace

import pytest

from quantgate.matrix import Case, load_matrix, load_models, reference_config
from quantgate.modelcache import ensure_synthetic
from quantgate.run import CaseSession

from .conftest import REPO

TRANSFORMER_MODULES = ["transformer_blocks", "single_transformer_blocks", "x_embedder", "context_embedder",
                       "time_text_embed", "norm_out", "proj_out"]


def _append_config(fixtures, text):
    path = fixtures / "matrix.toml"
    path.write_text(path.read_text() + "\n[[config]]\n" + text + "\n")


def test_quantization_that_silently_does_nothing_fails_the_memory_test(run_gate, fixtures_copy):
    _append_config(fixtures_copy, f'''id = "torchao-int8wo-noop"
backend = "torchao"
components = ["transformer"]
settings = {{ config = "Int8WeightOnlyConfig", modules_to_not_convert = {json.dumps(TRANSFORMER_MODULES)} }}
devices = ["cpu"]''')
    result = run_gate("--qg-config", "torchao-int8wo-noop", "-k", "test_quantization_takes_effect",
                      fixtures=fixtures_copy)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*quantization did not take effect on transformer: it holds * bytes, "
                                 "100.0% of its * BF16 bytes (limit 98%); 0 of * tensors are quantized*"])


@pytest.fixture(scope="session")
def fox_seed_1(shared_cache):
    """tiny-flux's first prompt at seed 1 (its baseline is seed 0). Session-scoped so that it is
    made before pytester snapshots sys.modules: modules imported inside a pytester test are
    dropped afterwards, and torch registers some operator libraries only once per process."""
    model = load_models(REPO / "fixtures")["tiny-flux"]
    reference = reference_config(load_matrix(REPO / "fixtures", {model.name: model}))
    other = replace(model, seeds=(1,))
    session = CaseSession(Case(other, reference, "cpu"), str(ensure_synthetic(model, shared_cache)),
                          str(shared_cache))
    session.load()
    return session.generate()["images"][f"{model.prompts[0].id}-s1"]


def test_baseline_replaced_by_another_seeds_image_fails_the_quality_tests(fox_seed_1, run_gate, baselines_copy):
    from PIL import Image

    model = load_models(REPO / "fixtures")["tiny-flux"]
    png = baselines_copy / model.name / "cpu-x86_64" / f"{model.prompts[0].id}-s0.png"
    Image.fromarray(fox_seed_1).save(png)
    meta_path = png.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(png.read_bytes()).hexdigest()     # a well-formed, wrong baseline
    meta_path.write_text(json.dumps(meta))
    result = run_gate("--qg-config", "bf16", "--qg-config", "quanto-int8", "-k", "test_quality",
                      baselines=baselines_copy)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*image drifted from the BF16 baseline*", "*fox-s0: SSIM 0.* < floor *"])
    assert "lighthouse-s0: SSIM" not in result.stdout.str()


def test_backend_that_cannot_be_imported_fails_rather_than_skips(run_gate, tmp_path):
    broken = tmp_path / "broken" / "gguf"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("planted: this gguf release is broken")\n')
    env = {"PYTHONPATH": str(tmp_path / "broken")}
    result = run_gate("--qg-config", "gguf-q8_0", env=env)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 5 and "skipped" not in outcomes, outcomes
    result.stdout.fnmatch_lines(["*backend 'gguf' failed to import gguf: ImportError: planted*"])

    allowed = run_gate("--qg-config", "gguf-q8_0", "--qg-allow-missing-backends", env=env)
    allowed.assert_outcomes(skipped=5)


PLANTED = '''
import os, signal, time
from quantgate.run import CaseSession

class Planted(CaseSession):
    def load(self, *args):
        fault = {"quanto-int8": "segfault", "quanto-int4": "abort", "quanto-float8": "hang"}.get(self.case.config.id)
        if fault == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        if fault == "abort":
            os.abort()
        if fault == "hang":
            time.sleep(3600)
        return super().load(*args)
'''


def test_crash_abort_and_hang_each_fail_only_their_case(run_gate, fixtures_copy, tmp_path):
    (tmp_path / "planted_sessions.py").write_text(PLANTED)
    matrix = fixtures_copy / "matrix.toml"
    text = matrix.read_text()
    matrix.write_text(text.replace('settings = { weights_dtype = "float8" }',
                                   'settings = { weights_dtype = "float8" }\ntimeout_s = 5'))
    configs = [a for c in ("quanto-int8", "quanto-int4", "quanto-float8", "torchao-int8wo") for a in ("--qg-config", c)]
    result = run_gate(*configs, "-k", "test_backend_imports", "--qg-case-session", "planted_sessions:Planted",
                      fixtures=fixtures_copy, env={"PYTHONPATH": str(tmp_path)})
    result.assert_outcomes(passed=1, failed=3)          # the case after the faults still runs
    result.stdout.fnmatch_lines([
        "*tiny-flux-quanto-int8-cpu: the case's process was killed by SIGSEGV during 'load' (backend quanto)*",
        "*tiny-flux-quanto-int4-cpu: the case's process was killed by SIGABRT during 'load' (backend quanto)*",
        "*tiny-flux-quanto-float8-cpu: 'load' exceeded the case's budget of 5 s*",
    ])
