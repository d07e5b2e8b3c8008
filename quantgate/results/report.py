"""One self-contained HTML report of a result set: images embedded, opens from an artifact with no
server.

Failures first; then, per case, the BF16 baseline, the case's image, the SSIM map as a heatmap and
the absolute difference, with SSIM and PSNR; memory bars (weights, peak while loading, peak while
making images) against the expectations' ceilings; step time against BF16's in the same run and
against a previous run; the environment. Given a base (a version bump), each figure also shows the
base's. Plots are matplotlib's; images are embedded as JPEG data URIs (at most 512 px a side: the
report is for the eye, the metrics were computed on the full PNGs).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from quantgate.matrix import expectation_classes, expectation_for
from quantgate.results.record import CaseRecord, _fmt, backends_moved, latency_ratio, read_results, references_by_case
from quantgate.units import GIB, MIB

DISPLAY_SIDE = 512


def _data_uri(array: np.ndarray) -> str:
    from PIL import Image

    im = Image.fromarray(array)
    if max(im.size) > DISPLAY_SIDE:
        im.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _png_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _read_png(path: Path) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError):
        return None


def _heatmap(ssim: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    rgba = colormaps["magma"](np.clip(ssim, 0.0, 1.0))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b|, brightened 4x so that small differences show."""
    return np.clip(np.abs(a.astype(np.int16) - b.astype(np.int16)) * 4, 0, 255).astype(np.uint8)


def image_panels(record: CaseRecord, results_dir: Path, baselines_dir: Path) -> list[dict]:
    """Per image of the case: baseline, image, SSIM heatmap, difference (data URIs) and its metrics."""
    from quantgate.case.metrics import ssim_map

    panels = []
    for key, sim in sorted(record.similarity.items()):
        image = _read_png(results_dir / "images" / record.case / f"{key}.png")
        baseline = _read_png(baselines_dir / record.model / str(record.hardware) / f"{key}.png")
        panel = {"key": key, "ssim": sim.get("ssim"), "psnr": sim.get("psnr"), "images": []}
        if baseline is not None:
            panel["images"].append(("BF16 baseline", _data_uri(baseline)))
        if image is not None:
            panel["images"].append((record.config, _data_uri(image)))
        if image is not None and baseline is not None and image.shape == baseline.shape:
            panel["images"].append(("SSIM map (dark: differs)", _data_uri(_heatmap(ssim_map(baseline, image)))))
            panel["images"].append(("|difference| x4", _data_uri(_difference(baseline, image))))
        panel["missing"] = [name for name, found in (("baseline", baseline), ("image", image)) if found is None]
        panels.append(panel)
    return panels


def memory_chart(record: CaseRecord, expectation, base: CaseRecord | None) -> str | None:
    """Horizontal bars in GiB: weights, peak load and peak inference reserved, each with its ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("weights", record.total_bytes(), getattr(expectation, "weight_bytes_max", None) if not record.components
             else None, base.total_bytes() if base else None)]
    if record.components:
        rows[0] = ("quantized weights", record.quantized_bytes(), getattr(expectation, "weight_bytes_max", None),
                   base.quantized_bytes() if base else None)
    for label, key, limit in (("peak load (reserved)", "load_peak_reserved", "peak_load_bytes_max"),
                              ("peak inference (reserved)", "inference_peak_reserved", "peak_inference_bytes_max")):
        if record.memory.get(key):
            rows.append((label, record.memory[key], getattr(expectation, limit, None),
                         base.memory.get(key) if base else None))
    rows = [r for r in rows if r[1]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.55 * len(rows)))
    y = np.arange(len(rows))
    ax.barh(y, [r[1] / GIB for r in rows], height=0.5, color="#3b82f6", label="this run")
    if base is not None:
        ax.barh(y + 0.3, [(r[3] or 0) / GIB for r in rows], height=0.2, color="#9ca3af", label="base")
    for i, row in enumerate(rows):
        if row[2]:
            ax.plot([row[2] / GIB] * 2, [i - 0.35, i + 0.35], color="#dc2626", linewidth=2,
                    label="ceiling" if i == 0 else None)
    ax.set_yticks(y, [r[0] for r in rows])
    ax.set_xlabel("GiB")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    return _png_uri(fig)


def _failed(record: CaseRecord) -> bool:
    return record.status not in ("ok", "known failure", "does not fit", "not run") or any(
        o in ("failed", "error") for o in record.tests.values())


def _ceilings(record: CaseRecord, exp) -> str:
    """'weights 9.4 / 9.5 MB; peak inference 20.1 / 21.1 GiB': measured against ceiling, for Markdown."""
    if exp is None:
        return "no expectations"
    parts = []
    held = record.judged_bytes()
    if held and exp.weight_bytes_max:
        parts.append(f"weights {held / MIB:,.1f} / {exp.weight_bytes_max / MIB:,.1f} MiB")
    for label, key, limit in (("peak load", "load_peak_reserved", exp.peak_load_bytes_max),
                              ("peak inference", "inference_peak_reserved", exp.peak_inference_bytes_max)):
        if record.memory.get(key) and limit:
            parts.append(f"{label} {record.memory[key] / GIB:.2f} / {limit / GIB:.2f} GiB")
    return "; ".join(parts) or "-"


def build(results: Path, baselines_dir: Path, fixtures_dir: Path | None = None, base: Path | None = None,
          previous: Path | None = None, markdown: bool = False) -> str:
    """The report of `results` (a results.json): one HTML document, or (markdown=True) the same
    tables in Markdown, without images, for CI job summaries."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    data, records = read_results(results)
    results_dir = Path(results).parent
    refs = references_by_case(records)
    base_records = {r.case: r for r in read_results(base)[1]} if base else {}
    base_refs = references_by_case(list(base_records.values()))
    prev_records = {r.case: r for r in read_results(previous)[1]} if previous else {}
    expectations = _expectations(fixtures_dir, {r.model for r in records})
    cases = []
    for r in sorted(records, key=lambda r: not _failed(r)):
        b = base_records.get(r.case)
        exp = expectation_for(expectations.get(r.model, {}), expectation_classes(r.hardware, r.environment), r.config)
        prev = prev_records.get(r.case)
        cases.append({
            "record": r, "failed": _failed(r), "verdict": r.verdict(),
            "error": (r.error or "").strip().splitlines()[0] if r.error else "",
            "panels": image_panels(r, results_dir, baselines_dir) if r.similarity and not markdown else [],
            "memory_chart": None if markdown else memory_chart(r, exp, b),
            "ceilings": _ceilings(r, exp),
            "ssim": _fmt(r.min_similarity("ssim"), ".4f"), "psnr": _fmt(r.min_similarity("psnr"), ".2f"),
            "step_ms": _fmt(r.step_ms(), ".1f"), "ratio": _fmt(latency_ratio(r, refs.get(r.case)), ".2f"),
            "previous_step_ms": _fmt(prev.step_ms() if prev else None, ".1f"),
            "previous_change": _fmt(r.step_ms() / prev.step_ms() - 1 if prev and prev.step_ms() and r.step_ms()
                                    else None, "+.1%"),
            "base": None if b is None else {
                "verdict": b.verdict(), "ssim": _fmt(b.min_similarity("ssim"), ".4f"),
                "psnr": _fmt(b.min_similarity("psnr"), ".2f"), "bytes": _fmt(b.judged_bytes(), ","),
                "step_ms": _fmt(b.step_ms(), ".1f"), "ratio": _fmt(latency_ratio(b, base_refs.get(b.case)), ".2f")},
            "bytes": _fmt(r.judged_bytes(), ","), "weight_ratio": _fmt(r.weight_ratio(), ".3f"),
        })
    env = data["environment"]
    packages = env.get("packages") or {}
    base_env = read_results(base)[0]["environment"] if base else None
    changed = ({k: (base_env.get("packages", {}).get(k), v) for k, v in packages.items()
                if base_env.get("packages", {}).get(k) != v} if base_env else {})
    moved = _backends_moved(list(base_records.values()), records) if base else []
    jinja = Environment(loader=PackageLoader("quantgate", "templates"), autoescape=select_autoescape(["html"]),
                        keep_trailing_newline=True)
    return jinja.get_template("report.md" if markdown else "report.html").render(
        title=f"quantgate report: {results_dir.name}", data=data, env=env, packages=packages, cases=cases,
        failures=sum(c["failed"] for c in cases), base=str(base) if base else None, changed=changed, moved=moved,
        previous=str(previous) if previous else None, results=str(results), escape=html.escape)


def _backends_moved(base: list[CaseRecord], records: list[CaseRecord]) -> list[str]:
    """Sentences naming each quantization backend that ran in only one of the base and this run."""
    vanished, appeared = backends_moved(base, records)
    return ([f"backend '{b}' vanished: {n} case(s) in the base, none here" for b, n in vanished.items()]
            + [f"backend '{b}' appeared: {n} case(s) here, none in the base" for b, n in appeared.items()])


def _expectations(fixtures_dir: Path | None, models: set[str]) -> dict:
    if fixtures_dir is None:
        return {}
    from quantgate.errors import QuantgateError
    from quantgate.matrix import load_expectations, load_matrix, load_models

    try:
        known = load_models(fixtures_dir)
        configs = load_matrix(fixtures_dir, known)
        return {m: load_expectations(fixtures_dir, m, configs) for m in models if m in known}
    except QuantgateError:
        return {}         # the report still shows what was measured; the gate reports bad fixtures itself


def write(results: Path, out: Path, baselines_dir: Path, fixtures_dir: Path | None = None, base: Path | None = None,
          previous: Path | None = None) -> Path:
    """`out` (HTML) and the same report in Markdown beside it (`out` with the suffix .md)."""
    from quantgate.io import atomic_write

    atomic_write(Path(out), build(results, baselines_dir, fixtures_dir, base, previous))
    atomic_write(Path(out).with_suffix(".md"), build(results, baselines_dir, fixtures_dir, base, previous,
                                                      markdown=True))
    return Path(out)
