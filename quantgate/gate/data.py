"""What one gate session reads from its fixtures folder, once: models, configurations, cases and
expectations, as one named object (GateData)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantgate.errors import QuantgateError
from quantgate.matrix import (
    BackendConfig,
    Case,
    Expectation,
    ModelSpec,
    build_cases,
    load_defaults,
    load_expectations,
    load_matrix,
    load_models,
)


@dataclass(frozen=True)
class GateData:
    models: dict[str, ModelSpec]
    configs: list[BackendConfig]
    all_cases: list[Case]                   # every case of the selected models
    cases: list[Case]                       # those of the configurations --qg-config picks (all without it)
    expectations: dict[str, dict[str, dict[str, Expectation]]]   # model -> hardware class -> config -> Expectation
    defaults: dict                          # matrix.toml's [defaults]
    shard: tuple[int, int] | None           # --qg-shard I/N, as (I, N)

    def reference_of(self, case: Case) -> Case | None:
        """The BF16 reference case of the same model and device (None for a reference)."""
        if case.config.is_reference:
            return None
        return next(c for c in self.all_cases
                    if c.config.is_reference and c.model == case.model and c.device == case.device)


def read_gate_data(fixtures_dir: Path, models_asked: list[str], model_settings: str | None,
                   configs_asked: list[str], shard: str | None) -> GateData:
    """The session's data from `fixtures_dir`; a QuantgateError names what is wrong and how to fix it."""
    if not (fixtures_dir / "matrix.toml").exists():
        raise QuantgateError(f"no matrix at {fixtures_dir / 'matrix.toml'}: point --qg-fixtures "
                             "(or the ini option qg_fixtures) at a quantgate fixtures folder")
    from quantgate.sources.checkpoints import select_models

    models = select_models(load_models(fixtures_dir), models_asked, model_settings, fixtures_dir / "models.toml")
    configs = load_matrix(fixtures_dir, models)
    all_cases = build_cases(models, configs)
    known = [c.id for c in configs]
    unknown = [c for c in configs_asked if c not in known]
    if unknown:
        raise QuantgateError(f"--qg-config {unknown[0]!r} is not in {fixtures_dir / 'matrix.toml'} "
                             f"(known: {', '.join(known)})")
    parsed_shard = None
    if shard:
        from quantgate.matrix.sharding import parse_shard

        parsed_shard = parse_shard(shard)
    return GateData(
        models=models, configs=configs, all_cases=all_cases,
        cases=[c for c in all_cases if not configs_asked or c.config.id in configs_asked],
        expectations={m: load_expectations(fixtures_dir, m, configs) for m in models},
        defaults=load_defaults(fixtures_dir), shard=parsed_shard)
