#!/usr/bin/env bash
# Run the GPU tier on a CUDA machine and keep everything it measured.
#
#   scripts/gpu-tier.sh OUT_DIR [PASSES] [-- extra pytest arguments]
#
# Writes OUT_DIR/env.txt (nvidia-smi, versions), and for each pass OUT_DIR/passN/ with the gate's
# results (results.json, results.md), pytest-benchmark's JSON and the log. With REGEN="model ..."
# (REGEN=1: tiny-flux) it first builds those models and regenerates their CUDA baselines (only the
# reference configuration writes them). BASELINES=DIR keeps the baselines there (default ./baselines);
# a model whose CUDA baselines are already in DIR is not regenerated, so a second call on a machine
# that kept its cache and DIR (a full-size model's cases split over two calls) goes straight on.
# With ALONE="config ..." it then runs those configurations alone, each in a session of its own,
# to show that a case's figures do not depend on what ran before it.
set -uo pipefail
out=${1:?usage: scripts/gpu-tier.sh OUT_DIR [PASSES] [-- pytest args]}
passes=${2:-1}
shift $(( $# >= 2 ? 2 : 1 ))
[ "${1:-}" = "--" ] && shift
mkdir -p "$out"
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
  python3 - <<'PY'
import importlib.metadata as md, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
for p in ("diffusers", "transformers", "accelerate", "torchao", "optimum-quanto", "bitsandbytes", "gguf", "peft",
          "sdnq", "nvidia-modelopt", "auto-round"):
    try:
        print(p, md.version(p))
    except md.PackageNotFoundError:
        print(p, "missing")
PY
} > "$out/env.txt" 2>&1
cat "$out/env.txt"
baselines=${BASELINES:-baselines}
regen=${REGEN:-}
[ "$regen" = 1 ] && regen=tiny-flux
for model in $regen; do
  start=$(date +%s)
  python3 -m quantgate build-model --model "$model" > "$out/build-$model.log" 2>&1
  echo "build $model: exit $?, $(( $(date +%s) - start )) s"
  if [ -d "$baselines/$model/cuda-sm90" ]; then
    echo "regen $model: baselines already in $baselines/$model/cuda-sm90, kept" | tee -a "$out/regen.log"
  else
    python3 -m quantgate regen-baselines --model "$model" --device cuda --baselines "$baselines" 2>&1 | tail -3 \
      | tee -a "$out/regen.log"
  fi
done
status=0
for i in $(seq 1 "$passes"); do
  dir="$out/pass$i"
  start=$(date +%s)
  python3 -m pytest tests/gate -m gpu -p no:cacheprovider -q --qg-results-dir "$dir" --qg-baselines "$baselines" \
      --benchmark-json "$out/benchmark-pass$i.json" "$@" > "$out/pass$i.log" 2>&1 || status=$?
  echo "pass $i: exit $status, $(( $(date +%s) - start )) s, $(tail -1 "$out/pass$i.log")"
done
for config in ${ALONE:-}; do
  python3 -m pytest tests/gate -m gpu -p no:cacheprovider -q --qg-config "$config" --qg-baselines "$baselines" \
      --qg-results-dir "$out/alone-$config" --benchmark-disable > "$out/alone-$config.log" 2>&1
  echo "alone $config: $(tail -1 "$out/alone-$config.log")"
done
exit $status
