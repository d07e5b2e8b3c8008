"""The BF16 reference: no quantization; every other case of a model is judged against it."""

from __future__ import annotations

from quantgate.backends.base import Backend


class Reference(Backend):
    name = "none"
    quantizes_on_load = False
    loads_on_device = False
