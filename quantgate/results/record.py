"""One record per case, and the result set a session writes: results.json, results.md, images."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from quantgate.errors import QuantgateError
from quantgate.io import atomic_write
from quantgate.matrix import Case
from quantgate.status import NOT_PASSING, Status
from quantgate.units import GIB


class ResultsError(QuantgateError):
    """A results.json that is not a quantgate result set."""


@dataclass
class CaseRecord:
    case: str
    model: str
    config: str
    backend: str
    device: str
    components: list[str]
    family: str = ""
    status: str = Status.NOT_RUN   # quantgate.status.Status
    error: str | None = None
    hardware: str | None = None
    start_s: float | None = None   # starting the case's process
    wall_s: float | None = None    # the case, from opening its process to closing it
    load_s: float | None = None
    weights: dict = field(default_factory=dict)       # component -> {bytes, tensors, quantized_tensors}
    reference_bytes: dict = field(default_factory=dict)   # component -> bytes in the reference
    similarity: dict = field(default_factory=dict)    # image key -> {ssim, psnr} (a video: per-frame mean,
                                                      # worst frame, frames, temporal_ratio)
    memory: dict = field(default_factory=dict)        # CUDA allocator bytes: load_peak_reserved, ...
    image_seconds: list = field(default_factory=list)
    denoise_s: list = field(default_factory=list)     # each timed denoising call, measured in the case
    denoise_cpu_s: list = field(default_factory=list)  # the CPU seconds of each of those calls
    yardstick_s: list = field(default_factory=list)   # the BF16 reference's calls timed alternately with
                                                      # this case's (its yardstick process), where used
    yardstick_cpu_s: list = field(default_factory=list)
    steps: int = 0
    environment: dict = field(default_factory=dict)
    dtypes: dict = field(default_factory=dict)        # component -> compute dtype (quantgate.case.precision)
    tests: dict = field(default_factory=dict)         # test name -> quantgate.status.Outcome
    release: dict = field(default_factory=dict)       # how its process ended, what it left (quantgate.case.leaks)
    paths: dict = field(default_factory=dict)         # regression path -> its figures (quantgate.paths), and
                                                      # "similarity": image key -> {ssim, psnr} against the fresh load

    @classmethod
    def for_case(cls, case: Case) -> "CaseRecord":
        return cls(case=case.id, model=case.model.name, config=case.config.id, backend=case.config.backend,
                   device=case.device, components=list(case.components), family=case.model.family,
                   steps=case.model.timed_steps)

    # -------------------------------------------------------------- derived figures
    def quantized_bytes(self) -> int | None:
        if not self.weights or not self.components:
            return None
        return sum(self.weights[c]["bytes"] for c in self.components if c in self.weights)

    def weight_ratio(self) -> float | None:
        q = self.quantized_bytes()
        ref = sum(self.reference_bytes.get(c, 0) for c in self.components)
        return q / ref if q is not None and ref else None

    def judged_bytes(self) -> int | None:
        """The bytes the weight ceiling judges: the quantized components, or the whole pipeline for
        the reference (which quantizes none)."""
        return self.quantized_bytes() if self.components else self.total_bytes()

    def total_bytes(self) -> int | None:
        return sum(v["bytes"] for v in self.weights.values()) if self.weights else None

    def step_ms(self) -> float | None:
        if not self.denoise_s:
            return None
        return statistics.median(self.denoise_s) / self.steps * 1000.0

    def verdict(self) -> str:
        """'5 passed', or the tests that did not pass."""
        if not self.tests:
            return self.status
        bad = sorted(name for name, outcome in self.tests.items() if outcome in NOT_PASSING)
        if bad:
            return "FAILED: " + ", ".join(bad)
        counts: dict[str, int] = {}
        for outcome in self.tests.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))

    def min_similarity(self, name: str) -> float | None:
        values = [v[name] if v[name] is not None else math.inf for v in self.similarity.values()]
        return min(values) if values else None


def latency_clock(record: CaseRecord) -> str:
    """'cpu' where a case's timed calls and its reference's carry CPU times (a CPU case: on one
    thread, a call's CPU time is its own work, whatever else the machine runs), else 'wall'."""
    return "cpu" if record.device == "cpu" and record.denoise_cpu_s else "wall"


def timed_calls(record: CaseRecord, reference: CaseRecord | None, clock: str) -> tuple[list, list]:
    """(the case's timed calls, the reference's it is measured against) in seconds of `clock`: the
    reference's calls timed alternately with the case's (its yardstick) where there are any, else the
    reference case's own."""
    mine = record.denoise_cpu_s if clock == "cpu" else record.denoise_s
    beside = record.yardstick_cpu_s if clock == "cpu" else record.yardstick_s
    if beside:
        return mine, beside
    if reference is None:
        return mine, []
    return mine, reference.denoise_cpu_s if clock == "cpu" else reference.denoise_s


def pair_ratios(record: CaseRecord) -> list[float]:
    """Each timed call's CPU time over the yardstick call timed just before it (a CPU case with a
    yardstick; else empty): one ratio per pair, whose spread is the shared host's noise."""
    return [m / y for m, y in zip(record.denoise_cpu_s, record.yardstick_cpu_s) if y]


def median_pair_ratio(record: CaseRecord) -> float | None:
    """The median of pair_ratios (None without a yardstick): a CPU case's latency as a ratio to BF16
    in which each call is set against the yardstick call beside it, so that a host that slowed down
    between two runs, or for one call, moves it least."""
    pairs = pair_ratios(record)
    return statistics.median(pairs) if pairs else None


def latency_ratio(record: CaseRecord, reference: CaseRecord | None) -> float | None:
    """A case's fastest timed denoising call over its reference's fastest, both timed in the same
    session, in CPU time on a CPU (latency_clock) and wall time elsewhere; where a yardstick was used,
    the reference's calls alternated with the case's in one window. The fastest, not the median: a
    busy machine only ever adds time to a call."""
    mine, theirs = timed_calls(record, reference, latency_clock(record))
    if not mine or not theirs:
        return None
    return min(mine) / min(theirs)


def backends_ran(records) -> dict[str, int]:
    """Each quantization backend of the records that ran (not the reference): how many cases."""
    counts: dict[str, int] = {}
    for r in records:
        if r.backend != "none" and r.status != Status.NOT_RUN:
            counts[r.backend] = counts.get(r.backend, 0) + 1
    return counts


def backends_moved(base, records) -> tuple[dict[str, int], dict[str, int]]:
    """(vanished, appeared): each backend that ran in the base's records and not in `records`, with
    its case count in the base, and each that ran only in `records`, with its count there."""
    x, y = backends_ran(base), backends_ran(records)
    return {b: x[b] for b in sorted(set(x) - set(y))}, {b: y[b] for b in sorted(set(y) - set(x))}


def references_by_case(records: list[CaseRecord]) -> dict[str, CaseRecord]:
    """Each case's reference record in the same result set (same model, device and hardware)."""
    refs = {(r.model, r.device, r.hardware): r for r in records if r.backend == "none"}
    return {r.case: refs[(r.model, r.device, r.hardware)] for r in records
            if r.backend != "none" and (r.model, r.device, r.hardware) in refs}




def _gib(value) -> float | None:
    return None if value is None else value / GIB


def _fmt(value, spec: str, none: str = "-") -> str:
    if value is None:
        return none
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def markdown(records: list[CaseRecord], environment: dict, started: str) -> str:
    pk = environment.get("packages", {})
    versions = ", ".join(f"{k} {v}" for k, v in pk.items() if v)
    lines = [
        "# quantgate results",
        "",
        f"- date: {started}",
        f"- machine: {environment.get('cpu', '?')}, {environment.get('cores', '?')} cores"
        + (f"; GPU {environment['gpu']}, driver {environment.get('driver')}, CUDA {environment.get('cuda')}"
           if environment.get("gpu") else ""),
        f"- hardware class: {environment.get('hardware', '?')}"
        + (f"; CPU class {environment['cpu_class']}" if environment.get("cpu_class") else ""),
        f"- python {environment.get('python', '?')}; {versions}",
        "",
        "Weight bytes are real bytes of the quantized components (torchao/quanto tensor subclasses "
        "flattened, bitsandbytes state included); ratio is to the same components in BF16. SSIM and PSNR "
        "are the minimum over the model's prompts against the stored BF16 baselines. Step time is the "
        "median denoising call (measured inside the case's process, device synchronized) over its steps; "
        "x BF16 step is the case's fastest call over the BF16 reference's fastest, timed in the same session "
        "(on a CPU: CPU time of one-thread calls, each after a reference call timed beside it).",
        "",
        "| case | tests | SSIM | PSNR dB | quantized weight bytes | ratio to BF16 | step ms | x BF16 step | load s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    refs = references_by_case(records)
    for r in records:
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r.case, r.verdict(), _fmt(r.min_similarity("ssim"), ".4f"), _fmt(r.min_similarity("psnr"), ".2f"),
            _fmt(r.judged_bytes(), ","),
            _fmt(r.weight_ratio(), ".3f"), _fmt(r.step_ms(), ".1f"),
            _fmt(latency_ratio(r, refs.get(r.case)), ".2f"), _fmt(r.load_s, ".2f")))
    gpu = [r for r in records if r.memory]
    if gpu:
        lines += _table_section(
            "GPU memory and time",
            "CUDA caching-allocator figures in GiB, read in the case's own process: peaks are reset when a "
            "phase starts (load: from_pretrained to placed on the device; inference: the model's images) "
            "and read after a synchronize. Image s is one full pipeline call (text encoders, denoising, VAE).",
            ("case", "weight GiB", "after load alloc / reserved", "peak load alloc / reserved",
             "peak inference alloc / reserved", "step ms", "image s", "load s"))
        for r in gpu:
            m = r.memory
            pair = lambda a, b: f"{_fmt(_gib(m.get(a)), '.4f')} / {_fmt(_gib(m.get(b)), '.4f')}"
            lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
                r.case, _fmt(_gib(r.total_bytes()), ".4f"),
                pair("after_load_allocated", "after_load_reserved"),
                pair("load_peak_allocated", "load_peak_reserved"),
                pair("inference_peak_allocated", "inference_peak_reserved"),
                _fmt(r.step_ms(), ".2f"),
                _fmt(statistics.median(r.image_seconds) if r.image_seconds else None, ".3f"),
                _fmt(r.load_s, ".2f")))
    lines += _path_section(
        records, "roundtrip", "Round trip",
        "The quantized components saved as sharded safetensors and loaded back (quantgate.paths.roundtrip): "
        "images against the fresh load's, weight bytes against the fresh load's, the files written, and "
        "the seconds to save and to load back.",
        ("case", "images", "weight bytes", "files", "on disk", "save s", "load s"), _round_trip_row)
    lines += _path_section(
        records, "lora", "LoRA",
        "A synthetic rank-4 LoRA on the denoiser's attention projections, loaded onto the quantized pipeline "
        "(quantgate.paths.lora): the lowest SSIM of its images against the fresh load's (how far it moves "
        "them), the lowest SSIM against BF16's images with the same LoRA (its baselines' lora/ variant), "
        "whether weight 0, unloading and unfusing give back the images they should, and the bytes the "
        "adapter adds.",
        ("case", "moved to SSIM", "SSIM to BF16 + LoRA", "weight 0", "unloaded", "fuse, unfuse", "adapter bytes"),
        _lora_row)
    lines += _path_section(
        records, "compile", "Compile",
        "torch.compile of the denoiser with fullgraph=True and error_on_recompile (quantgate.paths.compile): "
        "the backend, Dynamo's graphs, the compiled images against the eager ones, the first compiled call "
        "(compile time included), the fastest eager and compiled calls and the speed-up (on a CPU, aot_eager "
        "runs the traced graph eagerly: no speed-up is expected there).",
        ("case", "backend", "graphs", "images", "compile s", "eager ms", "compiled ms", "speed-up"), _compile_row)
    errors = [r for r in records if r.error]
    if errors:
        lines += ["", "## Failures", ""]
        lines += [f"- **{r.case}** ({r.status}): {r.error.splitlines()[0]}" for r in errors]
    return "\n".join(lines) + "\n"


def _path_section(records: list[CaseRecord], path: str, title: str, text: str, columns: tuple[str, ...],
                  row) -> list[str]:
    """A results.md section of one table for regression path `path`: a row (`row(record, its figures)`,
    the cells after the case's) per case that took the path; nothing where none did."""
    taken = [r for r in records if r.paths.get(path)]
    if not taken:
        return []
    return _table_section(title, text, columns) + [
        "| " + " | ".join((r.case, *row(r, r.paths[path]))) + " |" for r in taken]


def _round_trip_row(r: CaseRecord, t: dict) -> tuple[str, ...]:
    held = {c: v["bytes"] for c, v in (t.get("components") or {}).items() if c in r.components}
    same = all(r.weights.get(c, {}).get("bytes") == b for c, b in held.items())
    return (_same(t.get("similarity")),
            ("same" if same else "differ: " + _fmt(sum(held.values()), ",")) if held else "-",
            _fmt(sum((t.get("files") or {}).values()), ","), _fmt(t.get("disk_bytes"), ","),
            _fmt(t.get("save_s"), ".2f"), _fmt(t.get("load_s"), ".2f"))


def _lora_row(r: CaseRecord, t: dict) -> tuple[str, ...]:
    moved = [v.get("ssim", 1.0) for v in (t.get("similarity_lora") or {}).values()]
    fuse = (t.get("errors") or {}).get("fuse")
    to_bf16 = [v["ssim"] for v in (t.get("similarity_lora_to_bf16") or {}).values() if v.get("ssim") is not None]
    return (_fmt(min(moved), ".4f") if moved else "-", _fmt(min(to_bf16), ".4f") if to_bf16 else "-",
            _same(t.get("similarity_weight_zero")),
            _same(t.get("similarity_unloaded")),
            "fails: " + fuse.split(":")[0] if fuse else _same(t.get("similarity_unfused_to_lora")),
            _fmt(t.get("adapter_bytes"), ","))


def _compile_row(r: CaseRecord, t: dict) -> tuple[str, ...]:
    failed = next(iter((t.get("errors") or {}).values()), None) or t.get("error")
    return (t.get("backend", "-"), _fmt(t.get("graphs"), "d"),
            "fails: " + failed.split(":")[0] if failed else _same(t.get("similarity")),
            _fmt(t.get("compile_s"), ".1f"), _fmt(_fastest_ms(t.get("eager_s")), ".1f"),
            _fmt(_fastest_ms(t.get("compiled_s")), ".1f"), _fmt(t.get("speedup"), ".2f") + ("x" if t.get("speedup") else ""))


def _fastest_ms(seconds: list | None) -> float | None:
    return min(seconds) * 1000 if seconds else None


def _table_section(title: str, text: str, columns: tuple[str, ...]) -> list[str]:
    """The lines that open a results.md section of one table: its heading, what it shows, its header."""
    return ["", f"## {title}", "", text, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _same(similarity: dict | None) -> str:
    """'identical', the lowest SSIM where an image differs, or '-' where the check did not run."""
    if not similarity:
        return "-"
    if all(v.get("identical") for v in similarity.values()):
        return "identical"
    return "SSIM " + _fmt(min(v.get("ssim", 1.0) for v in similarity.values()), ".4f")


def write_results(folder: Path, records: list[CaseRecord], environment: dict, started: str,
                  finished: str | None = None) -> Path:
    from quantgate.locks import exclusive

    payload = {"started": started,
               "finished": finished or datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "environment": environment, "cases": [asdict(r) for r in records]}
    with exclusive(Path(folder) / ".results.lock", f"the result set in {folder}"):
        atomic_write(folder / "results.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
        atomic_write(folder / "results.md", markdown(records, environment, started))
    return folder


def read_results(path: Path) -> tuple[dict, list[CaseRecord]]:
    """A result set written by write_results; anything else is refused with what is wrong."""
    try:
        data = json.loads(Path(path).read_text())
        cases = data["cases"]
        data["started"], data["environment"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ResultsError(f"{path}: not a quantgate result set ({type(exc).__name__}: {exc})") from None
    known = set(CaseRecord.__dataclass_fields__)
    records = []
    for i, c in enumerate(cases):
        unknown = sorted(set(c) - known)
        missing = sorted(f for f in ("case", "model", "config", "backend", "device", "components") if f not in c)
        if unknown or missing:
            raise ResultsError(f"{path}: case {c.get('case', i)}: "
                               + (f"unknown field(s) {', '.join(unknown)}" if unknown else "")
                               + ("; " if unknown and missing else "")
                               + (f"missing field(s) {', '.join(missing)}" if missing else ""))
        records.append(CaseRecord(**c))
    return data, records
