#!/usr/bin/env bash
# A version bump on a GPU machine without an index: the gate on the current wheels and on a
# candidate (the same wheels with some replaced), then `quantgate compare`.
#
#   scripts/gpu-bump.sh CANDIDATE_WHEELS_DIR OUT_DIR [-- extra pytest arguments]
#
# .whl/ holds the current wheels (../shared/device/fetch-wheels.sh); CANDIDATE_WHEELS_DIR holds the
# wheels that differ (e.g. optimum_quanto-0.2.6-...whl), each replacing the wheel of the same name.
# THRESHOLDS=file picks the thresholds (default fixtures/compare.toml; tiny-flux step times on a GPU
# are launch-bound, so judge them with latency_basis = "ratio" and a wide margin there).
# CHECKPOINTS=DIR is the checkpoint store the current wheels write and the candidate reads (default
# /tmp/qg-checkpoints; a full-size model's checkpoints are as large as its quantized weights).
# Writes OUT_DIR/compare.md, OUT_DIR/runs/ (both result sets) and the two logs; exits with compare's code.
set -uo pipefail
cand=${1:?usage: scripts/gpu-bump.sh CANDIDATE_WHEELS_DIR OUT_DIR [-- pytest args]}
out=${2:?usage: scripts/gpu-bump.sh CANDIDATE_WHEELS_DIR OUT_DIR [-- pytest args]}
shift 2
[ "${1:-}" = "--" ] && shift
mkdir -p "$out" /tmp/qg-candidate-wheels
cp .whl/*.whl /tmp/qg-candidate-wheels/
for wheel in "$cand"/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1)
  rm -f /tmp/qg-candidate-wheels/"$name"-*.whl
  cp "$wheel" /tmp/qg-candidate-wheels/
done
for lock in current candidate; do
  src=.whl; [ "$lock" = candidate ] && src=/tmp/qg-candidate-wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "/tmp/qg-site-$lock" "$src"/*.whl || exit 3
  start=$(date +%s)
  # the current wheels keep their round trips' checkpoints; the candidate's previous path loads them
  store=(--qg-checkpoints-out "${CHECKPOINTS:-/tmp/qg-checkpoints}"); mkdir -p "${CHECKPOINTS:-/tmp/qg-checkpoints}"
  [ "$lock" = candidate ] && store=(--qg-checkpoints-in "${CHECKPOINTS:-/tmp/qg-checkpoints}")
  PYTHONPATH="/tmp/qg-site-$lock:$PWD" python3 -m pytest tests/gate -m gpu -p no:cacheprovider -q \
      --qg-run-name "bump-$lock" "${store[@]}" "$@" > "$out/gate-$lock.log" 2>&1
  echo "gate on the $lock wheels: exit $?, $(( $(date +%s) - start )) s, $(tail -1 "$out/gate-$lock.log")"
done
PYTHONPATH="/tmp/qg-site-current:$PWD" python3 -m quantgate compare .quantgate/runs/bump-current \
    .quantgate/runs/bump-candidate --thresholds "${THRESHOLDS:-fixtures/compare.toml}" --markdown "$out/compare.md" > /dev/null
status=$?
cp -r .quantgate/runs "$out/runs"
cat "$out/compare.md"
exit $status
