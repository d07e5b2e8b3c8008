"""torch.compile of the quantized denoiser (quantgate.paths.compile): it compiles in one graph and
does not compile again on a second call with the same shapes; its images stay close to the eager
ones; its compiled calls are timed. Its tests run after the case's other tests and carry the
marker `compile`."""

import pytest

pytestmark = pytest.mark.compile


def test_denoiser_compiles_in_one_graph_and_never_recompiles(qg, qg_compile_case):
    taken = qg.take_path(qg_compile_case, "compile")
    errors = taken["errors"]
    assert "compile" not in errors, (
        f"torch.compile(fullgraph=True, backend={taken['backend']!r}) of the denoiser failed: {errors.get('compile')}")
    assert "recompile" not in errors, (
        f"the compiled denoiser compiled again on a call with the same shapes (error_on_recompile): {errors['recompile']}")


def test_compiled_images_stay_close_to_eager(qg, qg_compile_case):
    taken = qg.take_path(qg_compile_case, "compile")
    assert not taken["errors"], f"no compiled images to hold against eager: {next(iter(taken['errors'].values()), '')}"
    floor = qg.defaults()["compile_ssim_min"][qg_compile_case.device]     # 1.0: the same image, pixel for pixel
    qg.check_path_images(qg_compile_case, "compile", ssim_min=None if floor >= 1.0 else floor)


def test_compiled_denoise_latency(qg, qg_compile_case, benchmark):
    """The compiled denoiser's calls, timed by pytest-benchmark (the path has compiled it in the case's
    process); the path's own figures (compile time, speed-up over eager) are in the results."""
    taken = qg.take_path(qg_compile_case, "compile")
    assert not taken["errors"], f"nothing compiled to time: {next(iter(taken['errors'].values()), '')}"
    benchmark.extra_info.update({"case": qg_compile_case.id, "path": "compile", "backend": taken["backend"],
                                 "compile_s": taken["compile_s"], "speedup": taken["speedup"]})
    benchmark.pedantic(qg.denoise, args=(qg_compile_case,), kwargs={"record": False},
                       rounds=qg.latency_rounds(qg_compile_case), iterations=1, warmup_rounds=0)
