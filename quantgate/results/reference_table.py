"""Published figures side by side with this suite's measurements (`quantgate reference-table`).

The reference file (fixtures/reference/*.toml) gives, per configuration id, a published setting's
memory after loading and at its peak, and its seconds per image. This suite's figures are read from
a result set the same way the publication read them: torch.cuda.max_memory_reserved() since the
case's process started, so "after load" is the load phase's reserved peak and "peak" the larger of
the load and inference reserved peaks. Seconds per image are scaled to the publication's step count:
one measured image + (published steps - model steps) x the measured seconds per step.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from quantgate.errors import DataFileError
from quantgate.matrix.schema import Field, check_entry, read_toml
from quantgate.results.record import CaseRecord
from quantgate.status import Status
from quantgate.units import GIB

OFF_BY = 0.10      # a row whose memory differs by more than this share is flagged for an explanation
ROW_FIELDS = [Field("setting", str), Field("after_load_gib", float), Field("peak_gib", float),
              Field("seconds", float, required=False)]
TOP_FIELDS = [Field("model", str), Field("source", str), Field("memory", str), Field("steps", int),
              Field("rows", dict)]


def load_reference(path: Path) -> tuple[dict, dict[str, dict]]:
    top = check_entry(path, "reference", read_toml(path), TOP_FIELDS)
    rows = {cid: check_entry(path, f"rows.{cid}", raw, ROW_FIELDS) for cid, raw in top.pop("rows").items()}
    if not rows:
        raise DataFileError(path, None, "rows", "no rows")
    return top, rows


def ours(rec: CaseRecord, published_steps: int) -> dict:
    load = rec.memory.get("load_peak_reserved")
    peaks = [v for v in (load, rec.memory.get("inference_peak_reserved")) if v]
    peak = max(peaks) if peaks else None
    seconds = None
    if rec.image_seconds and rec.denoise_s and rec.steps:
        per_step = statistics.median(rec.denoise_s) / rec.steps
        seconds = min(rec.image_seconds) + (published_steps - rec.steps) * per_step
    return {"after_load": load / GIB if load else None, "peak": peak / GIB if peak else None, "seconds": seconds}


def _ratio(a, b) -> str:
    return f"{a / b:.3f}" if a is not None and b else "-"


def _num(v, fmt) -> str:
    return format(v, fmt) if v is not None else "-"


def table(reference_path: Path, records: list[CaseRecord], environment: dict,
          started: str) -> tuple[str, list[str]]:
    """The side-by-side table as Markdown, and the configurations flagged as off by more than OFF_BY."""
    top, rows = load_reference(reference_path)
    by_config = {r.config: r for r in records if r.model == top["model"] and r.status == Status.OK}
    from quantgate.hardware import backend_packages

    reported = {"torch", "diffusers", "transformers", *backend_packages()}
    lines = [
        f"# {top['model']} against the published figures",
        "",
        f"- published: {top['source']}; memory as {top['memory']}; {top['steps']} steps",
        f"- here: {started[:10]}, {environment.get('gpu') or 'no GPU'}, driver {environment.get('driver')}, "
        + ", ".join(f"{k} {v}" for k, v in sorted(environment.get("packages", {}).items())
                    if k in reported),
        "- memory here: the CUDA allocator's reserved peaks in the case's own process (after load: the load "
        "phase's peak; peak: the larger of the load and inference peaks), GiB",
        f"- seconds here: one measured image + ({top['steps']} - model steps) x measured seconds per step",
        f"- flagged: memory more than {OFF_BY:.0%} away from the published figure",
        "",
        "| configuration | published setting | after load, published | after load, here | ratio | "
        "peak, published | peak, here | ratio | s/image, published | s/image, here | |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    flagged = []
    for cid, row in rows.items():
        rec = by_config.get(cid)
        mine = ours(rec, top["steps"]) if rec else {"after_load": None, "peak": None, "seconds": None}
        off = [label for label, mine_key, row_key in (("after load", "after_load", "after_load_gib"),
                                                      ("peak", "peak", "peak_gib"))
               if mine[mine_key] is not None and abs(mine[mine_key] / row[row_key] - 1) > OFF_BY]
        if off:
            flagged.append(cid)
        note = "not run" if rec is None else (f"off by >{OFF_BY:.0%}: " + ", ".join(off) if off else "")
        lines.append(f"| {cid} | {row['setting']} | {row['after_load_gib']:.3f} | {_num(mine['after_load'], '.3f')} | "
                     f"{_ratio(mine['after_load'], row['after_load_gib'])} | {row['peak_gib']:.3f} | "
                     f"{_num(mine['peak'], '.3f')} | {_ratio(mine['peak'], row['peak_gib'])} | "
                     f"{_num(row.get('seconds'), '.0f')} | {_num(mine['seconds'], '.1f')} | {note} |")
    # configurations the result set measured that the publication has no figure for (backends it predates)
    for cid, rec in by_config.items():
        if cid in rows:
            continue
        mine = ours(rec, top["steps"])
        lines.append(f"| {cid} | - | - | {_num(mine['after_load'], '.3f')} | - | - | {_num(mine['peak'], '.3f')} | - | "
                     f"- | {_num(mine['seconds'], '.1f')} | no published figure |")
    return "\n".join(lines) + "\n", flagged
