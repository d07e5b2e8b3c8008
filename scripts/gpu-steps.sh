#!/usr/bin/env bash
# Steps of one device call that each keep what they measured, whatever stops the call.
#
#   export OUT=... BUDGET=560            # seconds the whole call may take from sourcing this file
#   source scripts/gpu-steps.sh
#   env_report                           # $OUT/env.txt: GPU, driver, versions
#   build_models tiny-flux tiny-sd3 ...  # built in parallel into the cache folder
#   step NAME LIMIT [pytest arguments]   # one pytest session, stopped by SIGINT at LIMIT seconds or at
#                                        # the call's budget, whichever comes first
#
# A step's results (results.json, results.md, the workers' parts where the merge did not happen, the
# log, pytest-benchmark's JSON) are packed into $OUT/NAME.tar.gz as soon as the step ends, so that a
# call stopped later still returns them. IMAGES=0 leaves the images out of the archive (full size).
# $OUT/timeline.txt says when each step started and ended, and how.
set -uo pipefail
: "${OUT:?set OUT}" "${BUDGET:=560}"
qg_deadline=$(( $(date +%s) + BUDGET ))
qg_work=${QG_STEPS_DIR:-/tmp/qg-steps}
mkdir -p "$qg_work" "$OUT"

say() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$OUT/timeline.txt"; }

env_report() {
  {
    date -u +%Y-%m-%dT%H:%M:%SZ
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
    python3 - <<'PY'
import importlib.metadata as md, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
for p in ("diffusers", "transformers", "accelerate", "torchao", "optimum-quanto", "bitsandbytes", "gguf", "peft",
          "sdnq", "nvidia-modelopt", "auto-round", "kernels"):
    try:
        print(p, md.version(p))
    except md.PackageNotFoundError:
        print(p, "missing")
PY
  } > "$OUT/env.txt" 2>&1
}

build_models() {
  local start pids=() m
  start=$(date +%s)
  for m in "$@"; do
    python3 -m quantgate build-model --model "$m" > "$qg_work/build-$m.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  say "built $* in $(( $(date +%s) - start )) s"
}

step() {
  local name=$1 limit=$2 left rc start dir
  shift 2
  left=$(( qg_deadline - $(date +%s) - 20 ))      # 20 s kept for packing
  (( left < limit )) && limit=$left
  if (( limit < 30 )); then
    say "$name: skipped, ${left} s left of the call's budget"
    return 0
  fi
  dir=$qg_work/$name
  mkdir -p "$dir"
  start=$(date +%s)
  say "$name: start, limit ${limit} s"
  timeout -s INT -k 15 "$limit" python3 -m pytest tests/gate -p no:cacheprovider -q -rfEx \
      --qg-results-dir "$dir/results" --benchmark-json "$dir/benchmark.json" "$@" > "$dir/log.txt" 2>&1
  rc=$?
  say "$name: exit $rc after $(( $(date +%s) - start )) s: $(tail -1 "$dir/log.txt")"
  local excludes=(--exclude=report.html)
  [ "${IMAGES:-1}" = 0 ] && excludes+=(--exclude=images)
  # the workers' folders only where the controller's merge did not happen
  [ -f "$dir/results/results.json" ] && excludes+=(--exclude=workers)
  tar czf "$OUT/$name.tar.gz" "${excludes[@]}" -C "$qg_work" "$name"
  say "$name: packed $(du -h "$OUT/$name.tar.gz" | cut -f1)"
}
