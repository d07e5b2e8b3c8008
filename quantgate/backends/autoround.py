"""AutoRound (Intel's auto-round): weight-only integer quantization whose rounding and ranges are tuned
by sign gradient descent on calibration data. diffusers loads AutoRound checkpoints only (its
AutoRoundConfig is for pre-quantized models), so the suite makes the checkpoint first, with auto-round,
from the BF16 weights (quantgate.sources.autoround_checkpoints), as it writes GGUF files, and then
loads it through diffusers."""

from __future__ import annotations

from quantgate.backends.base import NOT_CONVERT, Backend
from quantgate.matrix.schema import Field
from quantgate.sources.autoround_checkpoints import DEFAULT_SCHEME

KERNELS = ("auto", "torch", "tritonv2", "exllamav2", "marlin")   # diffusers' AutoRoundConfig.VALID_BACKENDS


class AutoRound(Backend):
    name = "autoround"
    marker, marker_help = "autoround", "uses AutoRound checkpoints"
    modules = ("auto_round", "auto_round.inference.convert_model")
    packages = ("auto-round",)
    routes = ("component",)
    denoiser_only = True
    settings_fields = (
        Field("scheme", str, required=False, default=DEFAULT_SCHEME,
              check=lambda v: None if v.startswith("W") and "A" in v else "must name an auto-round scheme like 'W4A16'"),
        Field("iters", int, required=False, check=lambda v: None if v >= 0 else "must be 0 (RTN) or more tuning steps"),
        Field("nsamples", int, required=False),
        Field("group_size", int, required=False),
        Field("sym", bool, required=False),
        Field("disable_opt_rtn", bool, required=False),
        Field("kernel", str, required=False, default=KERNELS[0], choices=KERNELS),
        NOT_CONVERT,           # kept in BF16 by auto-round's own layer_config ({name: {"bits": 16}})
    )

    def config(self, settings: dict, library: str):
        from diffusers import AutoRoundConfig

        return AutoRoundConfig(backend=settings.get("kernel") or KERNELS[0])

    def made_ahead(self, case, cache_root) -> bool:
        """On a CPU, where making the checkpoint takes a core for 27-88 s and the cases before it leave
        one free (a CPU case runs on one thread); on a GPU the maker would share the GPU with timed cases."""
        from quantgate.sources.autoround_checkpoints import is_made
        from quantgate.sources.cache import synthetic_dir

        if case.device != "cpu" or case.known_failure is not None or case.model.source != "synthetic":
            return False
        return not is_made(synthetic_dir(case.model, cache_root), case.config.settings, cache_root)

    def make_ahead(self, case, cache_root) -> None:
        from quantgate.sources.autoround_checkpoints import ensure_denoiser_checkpoint
        from quantgate.sources.cache import model_dir

        ensure_denoiser_checkpoint(model_dir(case.model, cache_root), case.config.settings, cache_root, case.model,
                                   case.device)

    def load_component(self, session, name, cls, qc, dtype):
        from quantgate.sources.autoround_checkpoints import ensure_denoiser_checkpoint

        folder = ensure_denoiser_checkpoint(session.model_dir, session.case.config.settings, session.cache_root,
                                            session.case.model, session.case.device)
        # a device_map as diffusers' AutoRound guide loads it: auto-round picks its kernels for that device
        return cls.from_pretrained(str(folder), subfolder=name, quantization_config=qc, dtype=dtype,
                                   device_map={"": session.case.device})
