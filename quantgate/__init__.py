"""quantgate: a regression and quality gate for quantized diffusion pipelines."""

__version__ = "0.1.0"
