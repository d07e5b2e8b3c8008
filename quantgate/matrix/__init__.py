"""The matrix (models x backend configurations x devices) and the expectations, read from data.

Files, under the fixtures directory:
  models.toml                 the models the gate runs, with their generation settings
  prompts.toml                the prompts those models use
  matrix.toml                 backend configurations (one [[config]] per entry)
  expectations/<model>.toml   thresholds per hardware class and configuration
Every error names the file, the entry and the field.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from quantgate.errors import DataFileError
from quantgate.matrix.schema import Field, check_entry, read_toml
from quantgate.units import GIB

PLACEMENTS = ("device", "model_cpu_offload", "group_offload")
CHECKPOINT_PATHS = ("roundtrip", "previous")     # regression paths that save a quantized checkpoint and load it
BASE_MARKERS = {
    "gpu": "needs a CUDA GPU (the GPU tier)",
    "slow": "takes long; left out of quick runs with -m 'not slow'",
}


def markers() -> dict[str, str]:
    """The markers a configuration may carry: the gate's own and each registered backend's."""
    from quantgate.backends import backend, names

    out = dict(BASE_MARKERS)
    for name in names():
        b = backend(name)
        if b.marker:
            out.setdefault(b.marker, b.marker_help or f"uses the {name} backend")
    return out


def _backend_problem(value: str) -> str | None:
    from quantgate.backends import ENTRY_POINT_GROUP, names

    if value in names():
        return None
    return (f"unknown value {value!r} (choose from: {', '.join(names())}; a package adds a backend through the "
            f"entry point group '{ENTRY_POINT_GROUP}')")
DEVICES = ("cpu", "cuda")
_COMPONENT = re.compile(r"^[a-z][a-z0-9_]*$")
ROUTES = ("component", "pipeline")
_ID = re.compile(r"^[a-z0-9][a-z0-9_.]*(-[a-z0-9_.]+)*$")


def _id_problem(value: str) -> str | None:
    if not _ID.match(value):
        return "must be lower-case words joined by '-' (like 'torchao-int8wo')"
    return None


def _unique(value: list) -> str | None:
    dupes = sorted({v for v in value if value.count(v) > 1})
    return f"repeats {', '.join(map(str, dupes))}" if dupes else None


# ---------------------------------------------------------------- models and prompts

@dataclass(frozen=True)
class Prompt:
    id: str
    text: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str                 # "synthetic" or "checkpoint"
    family: str                 # the pipeline family (quantgate.families): "flux", "sdxl", ...
    path: str | None            # for checkpoints: a local folder or a hub id in the local cache
    description: str
    height: int
    width: int
    steps: int
    guidance_scale: float | None
    max_sequence_length: int | None
    prompts: tuple[Prompt, ...]
    seeds: tuple[int, ...]
    seed: int                   # seed of the synthetic weights
    fixtures_dir: Path = field(compare=False)
    devices: tuple[str, ...] = DEVICES          # where this model's cases run
    configs: tuple[str, ...] | None = None      # only these configurations (default: all that allow it)
    latency_rounds: int | None = None           # timed denoising calls (default: the matrix's)
    borrows: str | None = None                  # a checkpoint: the models.toml model whose settings it uses
    cpu_float32: tuple[str, ...] = ()           # components that run in float32 on a CPU (not under test)
    latency_steps: int | None = None            # denoising steps of a timed call (default: steps)
    cpu_threads: int | None = None              # torch threads of a case's process on a CPU (default: torch's)
    lora_strength: float = 0.5                  # scale of the lora path's synthetic LoRA (quantgate.paths.lora)
    path_images: int = 1                        # images a regression path makes at each step: the first pairs of images()
    paths: tuple[str, ...] | None = None        # the regression paths its cases may take (default: all their configuration's)
    call: dict = field(default_factory=dict, compare=False)  # the family's free call arguments (num_frames, ...)
    known_failures: dict = field(default_factory=dict, compare=False)  # configuration id -> its KnownFailures here

    @property
    def pipeline_family(self):
        from quantgate.families import family

        return family(self.family)

    @property
    def frames(self) -> int:
        """Frames of one output: num_frames for a video family, else 1."""
        return int(self.call.get("num_frames", 1)) if self.pipeline_family.video else 1

    @property
    def timed_steps(self) -> int:
        return self.latency_steps or self.steps

    @property
    def config_dir(self) -> Path:
        return self.fixtures_dir / "models" / self.name

    def float32_components(self, device: str) -> tuple[str, ...]:
        """The components this model runs in float32 on `device` (the same for every configuration)."""
        return self.cpu_float32 if device == "cpu" else ()

    def images(self) -> list[tuple[Prompt, int]]:
        """Every (prompt, seed) pair the model is judged on, in a fixed order."""
        return [(p, s) for p in self.prompts for s in self.seeds]

    def timed_rounds(self, defaults: dict) -> int:
        """Timed denoising calls per case: the model's latency_rounds, else the matrix's [defaults]."""
        return self.latency_rounds or defaults["latency_rounds"]

    def takes_path(self, name: str) -> bool:
        """Whether this model's cases take regression path `name` where their configuration names it."""
        return self.paths is None or name in self.paths

    def path_images_pairs(self) -> list[tuple[Prompt, int]]:
        """The (prompt, seed) pairs a regression path makes images of at each of its steps: the first
        path_images of images(). One image shows a reload or an unloaded LoRA identical or not, and
        a path's steps make several sets: all of them would double the paths' time on a tiny model."""
        return self.images()[:self.path_images]


def _components_problem(value: list, roles: bool = True) -> str | None:
    from quantgate.families import ROLES

    for item in value:
        if not _COMPONENT.match(item):
            return f"{item!r} is not a component name (lower-case, like 'text_encoder_2')"
    if not roles and any(item in ROLES for item in value):
        return f"names components, not roles ({', '.join(ROLES)})"
    return _unique(value)


def _family_problem(value: str) -> str | None:
    from quantgate.families import names

    return None if value in names() else f"unknown family {value!r} (registered: {', '.join(names())})"


def _call_problem(fam, call: dict) -> tuple[str, str] | None:
    """A [<model>.call] table's problem, as (field, text), or None."""
    for key, value in call.items():
        if key not in fam.call_arguments:
            allowed = ", ".join(fam.call_arguments) or "none"
            return key, f"is not a free call argument of family {fam.name!r} (allowed: {allowed})"
        if key == "num_frames" and not (isinstance(value, int) and value >= 1 and (value - 1) % 4 == 0):
            return key, "must be 1, 5, 9, ... (4k+1: the video VAE compresses 4 frames into one latent frame)"
        if key == "negative_prompt" and not (isinstance(value, str) and value.strip()):
            return key, "must be a non-empty string"
        if key == "true_cfg_scale" and not (isinstance(value, (int, float)) and value >= 1):
            return key, "must be a number of at least 1"
    return None


def _multiple_of_16(value: int) -> str | None:
    return None if value >= 16 and value % 16 == 0 else "must be a multiple of 16 (FLUX packs 2x2 latents of an 8x VAE)"


MODEL_FIELDS = [
    Field("source", str, choices=("synthetic", "checkpoint")),
    Field("builder", str, required=False, check=lambda v: f"was renamed: write family = {v!r}"),
    Field("family", str, check=_family_problem),
    Field("path", str, required=False),
    Field("description", str, required=False, default=""),
    Field("height", int, check=_multiple_of_16),
    Field("width", int, check=_multiple_of_16),
    Field("steps", int, check=lambda v: None if v >= 1 else "must be at least 1"),
    Field("guidance_scale", float, required=False),
    Field("max_sequence_length", int, required=False, check=lambda v: None if v >= 1 else "must be at least 1"),
    Field("prompts", list, item_kind=str, check=lambda v: _unique(v) or (None if v else "must name at least one prompt")),
    Field("seeds", list, item_kind=int, check=lambda v: _unique(v) or (None if v else "must hold at least one seed")),
    Field("seed", int, required=False, default=0),
    Field("devices", list, item_kind=str, required=False, choices=DEVICES,
          check=lambda v: _unique(v) or (None if v else "must name at least one device")),
    Field("configs", list, item_kind=str, required=False, check=_unique),
    Field("latency_rounds", int, required=False, check=lambda v: None if v >= 1 else "must be at least 1"),
    Field("cpu_float32", list, item_kind=str, required=False, default=list, check=lambda v: _components_problem(v, roles=False)),
    Field("latency_steps", int, required=False, check=lambda v: None if v >= 1 else "must be at least 1"),
    Field("cpu_threads", int, required=False, check=lambda v: None if v >= 1 else "must be at least 1"),
    Field("lora_strength", float, required=False, default=0.5, check=lambda v: None if v > 0 else "must be positive"),
    Field("path_images", int, required=False, default=1, check=lambda v: None if v >= 1 else "must be at least 1"),
    Field("paths", list, item_kind=str, required=False, check=lambda v: _paths_problem(v)),
    Field("call", dict, required=False, default=dict),
    Field("known_failures", dict, required=False, default=dict),
]
PROMPT_FIELDS = [Field("text", str, check=lambda v: None if v.strip() else "must not be empty")]


def load_models(fixtures_dir: Path) -> dict[str, ModelSpec]:
    fixtures_dir = Path(fixtures_dir)
    prompts_path = fixtures_dir / "prompts.toml"
    prompts = {}
    for name, raw in read_toml(prompts_path).items():
        prompts[name] = Prompt(name, check_entry(prompts_path, name, raw, PROMPT_FIELDS)["text"])
    path = fixtures_dir / "models.toml"
    models = {}
    for name, raw in read_toml(path).items():
        problem = _id_problem(name)
        if problem:
            raise DataFileError(path, name, None, f"model name {problem}")
        v = check_entry(path, name, raw, MODEL_FIELDS)
        if v["source"] == "checkpoint" and not v["path"]:
            raise DataFileError(path, name, "path", "missing (a checkpoint model needs a path)")
        for pid in v["prompts"]:
            if pid not in prompts:
                raise DataFileError(path, name, "prompts",
                                    f"unknown prompt {pid!r} (defined in {prompts_path}: {', '.join(prompts)})")
        from quantgate.families import family

        family_name = v["family"]
        fam = family(family_name)
        problem = _call_problem(fam, v["call"])
        if problem:
            raise DataFileError(path, name, f"call.{problem[0]}", problem[1])
        if fam.uses_max_sequence_length and v["max_sequence_length"] is None:
            raise DataFileError(path, name, "max_sequence_length", f"missing (family {fam.name!r} pads prompts to it)")
        if fam.video and "num_frames" not in v["call"]:
            raise DataFileError(path, name, "call.num_frames", f"missing (family {fam.name!r} makes videos)")
        own = fam.synthetic_names()
        unknown_parts = [n for n in v["cpu_float32"] if own and n not in own]
        if unknown_parts:
            raise DataFileError(path, name, "cpu_float32", f"{unknown_parts[0]!r} is not a component of family "
                                f"{fam.name!r} ({', '.join(sorted(own))})")
        known_here: dict[str, tuple[KnownFailure, ...]] = {}
        entry_of: dict[tuple[str, str], str] = {}       # (configuration, test or "" for the case) -> entry
        for key, raw_known in v["known_failures"].items():
            where = f"{name}.known_failures.{key}"
            kf = check_entry(path, where, raw_known, MODEL_KNOWN_FAILURE_FIELDS)
            known = KnownFailure.from_entry(kf)
            for config_id in kf["configs"] or [key]:      # the key is the configuration, unless configs lists them
                for test in known.tests or ("",):       # entries of one configuration name tests of their own
                    if (config_id, test) in entry_of:
                        what = f"test {test!r} of configuration {config_id!r}" if test else f"configuration {config_id!r}"
                        raise DataFileError(path, where, "configs", f"{what} already has a known failure on model "
                                            f"{name!r}, in entry {entry_of[config_id, test]!r}; one entry per test")
                    entry_of[config_id, test] = key
                known_here[config_id] = known_here.get(config_id, ()) + (known,)
        models[name] = ModelSpec(
            name=name, source=v["source"], family=family_name, path=v["path"],
            description=v["description"], height=v["height"], width=v["width"], steps=v["steps"],
            guidance_scale=v["guidance_scale"], max_sequence_length=v["max_sequence_length"],
            prompts=tuple(prompts[p] for p in v["prompts"]), seeds=tuple(v["seeds"]), seed=v["seed"],
            fixtures_dir=fixtures_dir, devices=tuple(v["devices"] or DEVICES),
            configs=tuple(v["configs"]) if v["configs"] is not None else None,
            latency_rounds=v["latency_rounds"], cpu_float32=tuple(v["cpu_float32"]),
            latency_steps=v["latency_steps"], cpu_threads=v["cpu_threads"], call=dict(v["call"]),
            lora_strength=v["lora_strength"], path_images=v["path_images"],
            paths=tuple(v["paths"]) if v["paths"] is not None else None,
            known_failures=known_here)
    if not models:
        raise DataFileError(path, None, None, "defines no model")
    return models


# ---------------------------------------------------------------- backend configurations

@dataclass(frozen=True)
class KnownFailure:
    match: tuple[str, ...]   # texts of which the failure's message must contain one (one per device's wording)
    reason: str              # why it fails, shown in the report
    tests: tuple[str, ...] = ()  # the tests that fail (their assertions' messages match); none: the case fails
    devices: tuple[str, ...] = ()  # where it fails; none: on every device the case runs on
    cpu_classes: tuple[str, ...] = ()  # on the CPU, only on these CPU classes (quantgate.hardware.cpu_class)
    # False for a failure seen on some machines of its devices and classes and not on others: where it
    # does not happen, the test's own checks ran and passed (XPASS), which then does not fail the test
    strict: bool = True

    @classmethod
    def from_entry(cls, entry: dict) -> "KnownFailure":
        return cls(as_texts(entry["match"]), entry["reason"], as_texts(entry.get("test") or ()),
                   tuple(entry.get("devices") or ()), tuple(entry.get("cpu_classes") or ()),
                   entry.get("strict") is not False)      # the schema fills a missing field with None

    def holds_on(self, device: str) -> bool:
        """Whether it holds for a case on `device` here: its devices, and on the CPU its CPU classes."""
        if self.devices and device not in self.devices:
            return False
        return not self.cpu_classes or (device == "cpu" and _this_cpu_class() in self.cpu_classes)

    def matches(self, message: str) -> bool:
        return any(text in message for text in self.match)


@dataclass(frozen=True)
class BackendConfig:
    id: str
    backend: str
    route: str
    placement: str
    load_on: str
    components: tuple[str, ...]
    settings: dict
    markers: tuple[str, ...]
    devices: tuple[str, ...]
    models: tuple[str, ...] | None
    timeout_s: float
    known_failures: tuple[KnownFailure, ...]   # matrix.toml known_failure: one table, or a list of them
    description: str
    memory_limit_gib: float | None = None
    paths: tuple[str, ...] = ()     # regression paths its quantized cases take (quantgate.paths)

    @property
    def memory_limit_bytes(self) -> int | None:
        return int(self.memory_limit_gib * GIB) if self.memory_limit_gib else None

    @property
    def is_reference(self) -> bool:
        return self.backend == "none"

    @property
    def all_markers(self) -> tuple[str, ...]:
        from quantgate.backends import backend

        marker = backend(self.backend).marker
        extra = (marker,) if marker else ()
        return tuple(dict.fromkeys(extra + self.markers))


def _markers_problem(value: list) -> str | None:
    known = markers()
    bad = [m for m in value if m not in known]
    if bad:
        return f"unknown marker {bad[0]!r} (registered: {', '.join(known)})"
    return _unique(value)


def _paths_problem(value: list) -> str | None:
    from quantgate.paths import names

    unknown = [v for v in value if v not in names()]
    if unknown:
        return f"unknown regression path {unknown[0]!r} (registered: {', '.join(names())})"
    return _unique(value)


def as_texts(value) -> tuple:
    """A data file's "a text, or a list of texts" as a tuple."""
    return (value,) if isinstance(value, str) else tuple(value)


def _match_problem(value) -> str | None:
    texts = as_texts(value)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        return "must be a non-empty string, or a non-empty list of them (the failure's message contains one)"
    return None


def _tests_problem(value) -> str | None:
    tests = as_texts(value)
    if not tests or not all(isinstance(t, str) and t.startswith("test_") for t in tests):
        return "must name a test function (test_...), or a list of them"
    return None


def _cpu_classes_problem(value: list) -> str | None:
    bad = [v for v in value if not re.fullmatch(r"cpu-[a-z0-9_]+-[a-z0-9-]+", v)]
    if bad:
        return f"{bad[0]!r} is not a CPU class: name one like 'cpu-x86_64-avx2' (quantgate.hardware.cpu_class)"
    return _unique(value) or (None if value else "must name at least one CPU class")


@cache
def _this_cpu_class() -> str:
    from quantgate.hardware import cpu_class

    return cpu_class()


KNOWN_FAILURE_FIELDS = [Field("match", (str, list), check=_match_problem), Field("reason", str),
                        Field("test", (str, list), required=False, check=_tests_problem),
                        Field("devices", list, item_kind=str, required=False, choices=DEVICES,
                              check=lambda v: _unique(v) or (None if v else "must name at least one device")),
                        Field("cpu_classes", list, item_kind=str, required=False, check=_cpu_classes_problem),
                        Field("strict", bool, required=False)]
MODEL_KNOWN_FAILURE_FIELDS = KNOWN_FAILURE_FIELDS + [     # models.toml's: one entry may name several configurations
    Field("configs", list, item_kind=str, required=False,
          check=lambda v: _unique(v) or (None if v else "must name at least one configuration"))]


CONFIG_FIELDS = [
    Field("id", str, check=_id_problem),
    Field("backend", str, check=_backend_problem),
    Field("route", str, required=False, default="component", choices=ROUTES),
    Field("placement", str, required=False, default="device", choices=PLACEMENTS),
    Field("load_on", str, required=False, default="cpu", choices=("cpu", "device")),
    Field("components", list, item_kind=str, check=_components_problem),
    Field("settings", dict, required=False, default=dict),
    Field("markers", list, item_kind=str, required=False, default=list, check=_markers_problem),
    Field("devices", list, item_kind=str, choices=DEVICES,
          check=lambda v: _unique(v) or (None if v else "must name at least one device")),
    Field("models", list, item_kind=str, required=False),
    Field("timeout_s", float, required=False, check=lambda v: None if v > 0 else "must be positive"),
    Field("memory_limit_gib", float, required=False, check=lambda v: None if v > 0 else "must be positive"),
    Field("known_failure", (dict, list), required=False,
          check=lambda v: None if isinstance(v, dict) or (v and all(isinstance(k, dict) for k in v))
          else "must be a table {match, reason, ...}, or a non-empty list of them"),
    Field("description", str, required=False, default=""),
    Field("paths", list, item_kind=str, required=False, check=_paths_problem),
]


DEFAULTS_FIELDS = [
    Field("timeout_s", float, required=False, default=900.0, check=lambda v: None if v > 0 else "must be positive"),
    Field("memory_limit_gib", float, required=False, check=lambda v: None if v > 0 else "must be positive"),
    Field("latency_rounds", int, required=False, default=5, check=lambda v: None if v >= 1 else "must be at least 1"),
    Field("leak_tolerance_mib", float, required=False, default=64.0,
          check=lambda v: None if v >= 0 else "must not be negative"),
    Field("shrink_ratio_max", float, required=False, default=0.98,
          check=lambda v: None if 0 < v <= 1 else "must be in (0, 1]"),
    Field("latency_yardstick", list, item_kind=str, required=False, default=list, choices=DEVICES, check=_unique),
    Field("paths", list, item_kind=str, required=False, default=list, check=_paths_problem),
    Field("lora_moved_ssim_max", float, required=False, default=0.99,
          check=lambda v: None if 0 < v < 1 else "must be in (0, 1)"),
    Field("lora_fused_ssim_min", float, required=False, default=0.99,
          check=lambda v: None if 0 < v < 1 else "must be in (0, 1)"),
    Field("lora_fused_ssim_margin", float, required=False, default=0.0,
          check=lambda v: None if 0 <= v < 1 else "must be in [0, 1)"),
    Field("lora_fused_gap_max", float, required=False, default=1.0,
          check=lambda v: None if 0 < v <= 1 else "must be in (0, 1]"),
    Field("lora_baseline_ssim_margin", dict, required=False, default=lambda: {d: 0.0 for d in DEVICES},
          check=lambda v: _per_device_problem(v, float) or _range_problem(v, 0, 1)),
    Field("lora_baseline_psnr_margin", dict, required=False, default=lambda: {d: 0.0 for d in DEVICES},
          check=lambda v: _per_device_problem(v, float) or _range_problem(v, 0, None)),
    Field("compile_backend", dict, required=False, default=lambda: {"cpu": "aot_eager", "cuda": "inductor"},
          check=lambda v: _per_device_problem(v, str)),
    Field("compile_emulate_precision_casts", bool, required=False, default=True),
    Field("compile_ssim_min", dict, required=False, default=lambda: {"cpu": 1.0, "cuda": 0.99},
          check=lambda v: _per_device_problem(v, float)),
]


def _per_device_problem(value: dict, kind: type) -> str | None:
    """A table with one entry per device (cpu, cuda), each of `kind` (a float may be written as an int)."""
    if set(value) != set(DEVICES):
        return f"must give every device ({', '.join(DEVICES)}), not {', '.join(sorted(value)) or 'none'}"
    bad = [k for k, v in value.items() if not isinstance(v, (int, float) if kind is float else kind) or isinstance(v, bool)]
    if bad:
        return f"{bad[0]}: must be a {kind.__name__}"
    return None


def _range_problem(value: dict, low: float, high: float | None) -> str | None:
    """A per-device table's values in [low, high) (high None: no upper bound)."""
    bad = [k for k, v in value.items() if v < low or (high is not None and v >= high)]
    if bad:
        return f"{bad[0]}: must be in [{low}, {high})" if high is not None else f"{bad[0]}: must not be below {low}"
    return None


def load_defaults(fixtures_dir: Path) -> dict:
    """The matrix's [defaults] table, checked, with defaults filled in."""
    path = Path(fixtures_dir) / "matrix.toml"
    return check_entry(path, "defaults", read_toml(path).get("defaults", {}), DEFAULTS_FIELDS)


def _refuse_overlapping(path: Path, name: str, known: tuple[KnownFailure, ...]) -> None:
    """A configuration's known failures may not both hold for one test (or for the case) on one device:
    which one the gate applied would depend on their order. An entry limited to CPU classes is apart:
    on those classes it comes before an entry for the whole device (Case._known), and two such entries
    may not share a class."""
    seen: dict[tuple[str, str, str], int] = {}
    for i, k in enumerate(known):
        for test in k.tests or ("",):
            for device in ("cpu",) if k.cpu_classes else k.devices or DEVICES:
                classes = k.cpu_classes or ("",)
                for cls in classes:
                    if (test, device, cls) in seen:
                        what = (f"test {test!r}" if test else "the case") + f" on {device}" + (f" ({cls})" if cls else "")
                        raise DataFileError(path, f"{name}.known_failure[{i}]", "test",
                                            f"{what} already has a known failure, entry [{seen[test, device, cls]}] "
                                            "of this configuration; one entry per test and device")
                    seen[test, device, cls] = i


def load_matrix(fixtures_dir: Path, models: dict[str, ModelSpec]) -> list[BackendConfig]:
    from quantgate.backends import backend  # each backend's module owns its settings' schema and rules

    path = Path(fixtures_dir) / "matrix.toml"
    data = read_toml(path)
    unknown = sorted(set(data) - {"defaults", "config"})
    if unknown:
        raise DataFileError(path, unknown[0], None, "unknown top-level table (use [defaults] and [[config]])")
    defaults = load_defaults(fixtures_dir)
    model_names = set(models) | set(load_models(fixtures_dir))   # every model, not only those selected
    entries = data.get("config", [])
    if not isinstance(entries, list) or not entries:
        raise DataFileError(path, None, "config", "no [[config]] entries")
    configs: list[BackendConfig] = []
    seen: set[str] = set()
    for index, raw in enumerate(entries):
        name = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else f"#{index + 1}"
        v = check_entry(path, name, raw, CONFIG_FIELDS)
        if v["id"] in seen:
            raise DataFileError(path, name, "id", "repeated: each configuration id must be unique")
        seen.add(v["id"])
        if v["backend"] == "none":
            if v["components"]:
                raise DataFileError(path, name, "components", "must be empty for the reference (backend 'none')")
        elif not v["components"]:
            raise DataFileError(path, name, "components", "must name at least one component to quantize")
        rules = backend(v["backend"])
        if rules.denoiser_only and v["components"] != ["denoiser"]:
            raise DataFileError(path, name, "components", f"backend '{v['backend']}' replaces the denoiser only "
                                "(its checkpoint, a GGUF file or one the suite makes, holds the denoiser alone): "
                                "use ['denoiser']")
        if v["route"] not in rules.routes:
            raise DataFileError(path, name, "route", f"{v['backend']} has no pipeline-level config: use route 'component'")
        if v["placement"] != "device" and v["devices"] != ["cuda"]:
            raise DataFileError(path, name, "placement", f"'{v['placement']}' offloads to the CPU from a GPU: "
                                "devices must be ['cuda']")
        if v["load_on"] == "device" and not rules.loads_on_device:
            raise DataFileError(path, name, "load_on", "'device' loads quantized components with a device_map, so "
                                "they are quantized there: it needs a torchao, quanto or bitsandbytes backend")
        if v["load_on"] == "device" and v["devices"] != ["cuda"]:
            raise DataFileError(path, name, "load_on", "'device' is for CUDA entries (devices = ['cuda']): with "
                                "device_map {'': 'cpu'} diffusers' torchao quantizer quantizes nothing")
        if v["placement"] == "group_offload" and "denoiser" not in v["components"]:
            raise DataFileError(path, name, "placement", "group_offload offloads the denoiser: quantize or "
                                "cast it (components must include 'denoiser')")
        for m in v["models"] or []:
            if m not in model_names:
                raise DataFileError(path, name, "models", f"unknown model {m!r} (known: {', '.join(sorted(model_names))})")
        problem = rules.check_settings(v["settings"])
        if problem:
            field_name, text = problem
            raise DataFileError(path, name, f"settings.{field_name}" if field_name else "settings", text)
        raw_known = v["known_failure"]
        raw_known = [] if raw_known is None else [raw_known] if isinstance(raw_known, dict) else raw_known
        known = tuple(KnownFailure.from_entry(check_entry(
            path, name if len(raw_known) == 1 else f"{name}.known_failure[{i}]", kf, KNOWN_FAILURE_FIELDS))
            for i, kf in enumerate(raw_known))
        _refuse_overlapping(path, name, known)
        paths = () if v["backend"] == "none" else tuple(v["paths"] if v["paths"] is not None else defaults["paths"])
        saved = [p for p in paths if p in CHECKPOINT_PATHS]
        if rules.own_checkpoint and saved:
            raise DataFileError(path, name, "paths", f"backend '{v['backend']}' loads its checkpoint from its source "
                                f"file, so it has no {saved[0]!r} path: name its paths without "
                                f"{' and '.join(map(repr, CHECKPOINT_PATHS))}")
        configs.append(BackendConfig(
            id=v["id"], backend=v["backend"], route=v["route"], placement=v["placement"], load_on=v["load_on"],
            components=tuple(v["components"]),
            settings=v["settings"], markers=tuple(v["markers"]), devices=tuple(v["devices"]),
            models=tuple(v["models"]) if v["models"] is not None else None,
            timeout_s=v["timeout_s"] if v["timeout_s"] is not None else defaults["timeout_s"],
            known_failures=known, description=v["description"],
            paths=paths,
            memory_limit_gib=v["memory_limit_gib"] if v["memory_limit_gib"] is not None else defaults["memory_limit_gib"]))
    known = {c.id for c in configs}
    for model in models.values():
        for c in configs:
            clash = [n for n in components_of(model, c) or () if n in model.cpu_float32]
            if clash and "cpu" in c.devices and "cpu" in model.devices and _runs(model, c):
                raise DataFileError(Path(fixtures_dir) / "models.toml", model.name, "cpu_float32",
                                    f"{clash[0]!r} runs in float32 on the CPU, but configuration {c.id!r} of "
                                    f"{path} quantizes it there: take it out of cpu_float32, or limit {c.id!r} "
                                    "to other models or devices")
        for field_name, ids in (("configs", model.configs or ()), ("known_failures", model.known_failures)):
            for config_id in ids:
                if config_id not in known:
                    raise DataFileError(Path(fixtures_dir) / "models.toml", model.name, field_name,
                                        f"unknown configuration {config_id!r} (not in {path})")
    references = [c.id for c in configs if c.is_reference]
    if len(references) != 1:
        raise DataFileError(path, None, "backend",
                            f"exactly one configuration must be the reference (backend 'none'), found {len(references)}")
    return configs


# ---------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    model: ModelSpec
    config: BackendConfig
    device: str

    @property
    def id(self) -> str:
        return f"{self.model.name}-{self.config.id}-{self.device}"

    @property
    def known_failure(self) -> KnownFailure | None:
        """How the case is expected to fail as a whole (its load or first call): the model's own entry
        for the configuration (models.toml known_failures), else the configuration's (matrix.toml
        known_failure), of those that name no test; None if none does."""
        return next((k for k in self._known() if not k.tests), None)

    def known_test_failure(self, test: str) -> KnownFailure | None:
        """The known failure of `test` of the case (an entry whose `test` names it). Where the first is
        not strict (it happens on some machines only), the test may fail as the entries after it say
        where it does not happen: their messages are accepted too."""
        found = [k for k in self._known() if test in k.tests]
        if not found or found[0].strict or len(found) == 1:
            return found[0] if found else None
        first, rest = found[0], found[1:]
        return dataclasses.replace(first, match=first.match + tuple(t for k in rest for t in k.match),
                                   reason=" Where it does not happen: ".join([first.reason, *(k.reason for k in rest)]))

    def _known(self) -> list[KnownFailure]:
        """The model's entries for the configuration, then the configuration's own, where they hold on
        this device (both may name tests of their own: quanto's pipeline round trip, FLUX's LoRA)."""
        entries = (*self.model.known_failures.get(self.config.id, ()), *self.config.known_failures)
        held = [k for k in entries if k.holds_on(self.device)]
        return [k for k in held if k.cpu_classes] + [k for k in held if not k.cpu_classes]

    @property
    def paths(self) -> tuple[str, ...]:
        """The regression paths the case takes, in order: its configuration's, of those its model takes."""
        return tuple(p for p in self.config.paths if self.model.takes_path(p))

    @property
    def components(self) -> tuple[str, ...]:
        """The components the configuration quantizes or casts, in this model's family."""
        return components_of(self.model, self.config) or ()

    @property
    def markers(self) -> tuple[str, ...]:
        """gpu on CUDA, its configuration's markers, and its family's name (`-m flux`, `-m "not flux"`)."""
        return (("gpu",) if self.device == "cuda" else ()) + self.config.all_markers + (self.model.family,)


def components_of(model: ModelSpec, config: BackendConfig) -> tuple[str, ...] | None:
    """The configuration's components for this model: roles ("denoiser", "text_encoder_big") become
    the family's components; None where the family has no such role, or a GGUF configuration meets a
    family whose denoiser diffusers loads from no single file."""
    from quantgate.backends import backend
    from quantgate.families import ROLES

    fam = model.pipeline_family
    if not backend(config.backend).serves(fam):
        return None
    out = []
    for name in config.components:
        real = fam.role(name) if name in ROLES else name
        if real is None:
            return None
        out.append(real)
    if model.source == "synthetic" and any(n not in fam.synthetic_names() for n in out):
        return None
    return tuple(out)


def _runs(model: ModelSpec, config: BackendConfig) -> bool:
    return (components_of(model, config) is not None
            and (config.models is None or model.name in config.models or model.borrows in config.models)
            and (model.configs is None or config.id in model.configs or config.is_reference))


def build_cases(models: dict[str, ModelSpec], configs: list[BackendConfig]) -> list[Case]:
    """Every case of the matrix, reference configurations first (their results are the yardstick).
    A case runs a configuration that allows the model (its `models`) and that the model takes (its
    `configs`), on a device both name."""
    ordered = sorted(configs, key=lambda c: not c.is_reference)
    return [Case(spec, c, d)
            for spec in models.values()
            for c in ordered if _runs(spec, c)
            for d in c.devices if d in spec.devices]


def reference_config(configs: list[BackendConfig]) -> BackendConfig:
    return next(c for c in configs if c.is_reference)


# ---------------------------------------------------------------- expectations

@dataclass(frozen=True)
class Expectation:
    ssim_min: float | None
    psnr_min: float | None
    weight_bytes_max: int | None
    weight_ratio_max: float | None
    peak_load_bytes_max: int | None
    peak_inference_bytes_max: int | None
    basis: str
    latency_ratio_max: float | None = None
    ssim_frame_min: float | None = None          # a video's worst frame
    psnr_frame_min: float | None = None
    temporal_ratio_min: float | None = None      # consecutive-frame change over the baseline's
    temporal_ratio_max: float | None = None


def _fraction(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else "must be between 0 and 1"


EXPECTATION_FIELDS = [
    Field("ssim_min", float, required=False, check=lambda v: None if -1.0 <= v <= 1.0 else "must be between -1 and 1"),
    Field("psnr_min", float, required=False, check=lambda v: None if v >= 0 else "must not be negative"),
    Field("weight_bytes_max", int, required=False, check=lambda v: None if v > 0 else "must be positive"),
    Field("weight_ratio_max", float, required=False, check=_fraction),
    Field("peak_load_bytes_max", int, required=False, check=lambda v: None if v > 0 else "must be positive"),
    Field("peak_inference_bytes_max", int, required=False, check=lambda v: None if v > 0 else "must be positive"),
    Field("latency_ratio_max", float, required=False, check=lambda v: None if v > 0 else "must be positive"),
    Field("ssim_frame_min", float, required=False, check=lambda v: None if -1.0 <= v <= 1.0 else "must be between -1 and 1"),
    Field("psnr_frame_min", float, required=False, check=lambda v: None if v >= 0 else "must not be negative"),
    Field("temporal_ratio_min", float, required=False, check=lambda v: None if v >= 0 else "must not be negative"),
    Field("temporal_ratio_max", float, required=False, check=lambda v: None if v > 0 else "must be positive"),
    Field("basis", str, required=False, default=""),
]


def expectation_classes(hardware: str | None, environment: dict | None) -> list[str]:
    """The expectation tables a record is judged by, general to specific: its hardware class
    (images, bytes, GPU memory), then on a CPU its CPU class (latency: quantgate.hardware.cpu_class)."""
    classes = [hardware] if hardware else []
    cpu_class = (environment or {}).get("cpu_class")
    if (environment or {}).get("device") == "cpu" and cpu_class and cpu_class not in classes:
        classes.append(cpu_class)
    return classes


def expectation_for(tables: dict[str, dict[str, Expectation]], classes: list[str],
                    config_id: str) -> Expectation | None:
    """The expectation of `config_id` from the tables of `classes`, a later (more specific) class's
    fields overriding an earlier one's; None where no class has a table for it."""
    found = [tables[hw][config_id] for hw in classes if config_id in tables.get(hw, {})]
    if not found:
        return None
    merged = {name: None for name in Expectation.__dataclass_fields__}
    for exp in found:
        merged.update({k: v for k, v in asdict(exp).items() if v not in (None, "")})
    merged["basis"] = "; ".join(e.basis for e in found if e.basis)
    return Expectation(**merged)


def expectations_path(fixtures_dir: Path, model: str) -> Path:
    return Path(fixtures_dir) / "expectations" / f"{model}.toml"


def load_expectations(fixtures_dir: Path, model: str,
                      configs: list[BackendConfig]) -> dict[str, dict[str, Expectation]]:
    """{hardware class: {configuration id: Expectation}} for one model; empty if it has no file."""
    path = expectations_path(fixtures_dir, model)
    if not path.exists():
        return {}
    known = {c.id for c in configs}
    out: dict[str, dict[str, Expectation]] = {}
    for hw, table in read_toml(path).items():
        if not isinstance(table, dict):
            raise DataFileError(path, hw, None, "must be a table of configurations ([<hardware class>.<config id>])")
        out[hw] = {}
        for config_id, raw in table.items():
            entry = f"{hw}.{config_id}"
            if config_id not in known:
                raise DataFileError(path, entry, None,
                                    f"unknown configuration {config_id!r} (not in matrix.toml)")
            v = check_entry(path, entry, raw, EXPECTATION_FIELDS)
            out[hw][config_id] = Expectation(**v)
    return out
