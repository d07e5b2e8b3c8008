"""Nunchaku Lite (diffusers' NunchakuLiteQuantizationConfig): SVDQuant W4A4 and AWQ W4A16 checkpoints
made with diffuse-compressor, run by kernels that the Hugging Face `kernels` package downloads from
the hub (rootonchair/nunchaku-lite-kernels). diffusers 0.42.1 refuses it on a CPU and on Hopper GPUs,
and needs Blackwell for NVFP4. None of that is reachable here (no hub, an sm90 GPU), so its matrix
entries are known failures with the library's own words; the module is here so that the day a
runner can load it, the entry turns red and the backend is gated like the others."""

from __future__ import annotations

from quantgate.backends.base import Backend
from quantgate.matrix.schema import Field

PRECISIONS = ("nvfp4", "int4")


class Nunchaku(Backend):
    name = "nunchaku"
    marker, marker_help = "nunchaku", "uses Nunchaku Lite checkpoints"
    modules = ("kernels",)          # diffusers' Nunchaku Lite quantizer gets its kernels through it
    packages = ("kernels",)
    routes = ("component",)
    denoiser_only = True
    settings_fields = (
        Field("precision", str, choices=PRECISIONS),
        Field("group_size", int),
        Field("rank", int, required=False, default=32),
        Field("targets", list, item_kind=str),      # the denoiser's layers the checkpoint quantizes
    )

    def config(self, settings: dict, library: str):
        from diffusers import NunchakuLiteQuantizationConfig

        target = {"precision": settings["precision"], "group_size": settings["group_size"],
                  "targets": list(settings["targets"])}
        if settings["precision"] == "nvfp4":
            return NunchakuLiteQuantizationConfig(svdq_w4a4={**target, "rank": settings.get("rank") or 32})
        return NunchakuLiteQuantizationConfig(awq_w4a16=target)
