#!/usr/bin/env bash
# Smoke-run every benchmark script with `--smoke` (tiny models or stand-ins, one round, no network), so a
# benchmark that breaks or hangs fails CI (.ci/run runs this step). Figures are not checked.
# Each script gets SMOKE_TIMEOUT seconds (default 180, room for a busy machine; its subprocesses stop with
# it); SMOKE_JOBS scripts run at once (default 2: most of each one's time is importing torch, transformers
# and gradio, on one core). A script's output is shown only when it fails.
# Usage: bash benchmarks/smoke.sh [benchmarks/NAME.py ...]   (default: every benchmarks/[!_]*.py)
set -uo pipefail
cd "$(dirname "$0")/.."

limit="${SMOKE_TIMEOUT:-180}"
parallel="${SMOKE_JOBS:-2}"
if [ $# -gt 0 ]; then scripts=("$@"); else scripts=(benchmarks/[!_]*.py); fi
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

one() {  # run a script; leave its output in $logs/N.log and "status seconds" in $logs/N.rc
  local began=$SECONDS
  timeout -k 10 "$limit" .venv/bin/python "$2" --smoke >"$logs/$1.log" 2>&1
  echo "$? $((SECONDS - began))" >"$logs/$1.rc"
}

started=$SECONDS
for i in "${!scripts[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n; done
  one "$i" "${scripts[$i]}" &
done
wait

failed=0
for i in "${!scripts[@]}"; do
  read -r rc took <"$logs/$i.rc"
  if [ "$rc" = 0 ]; then
    printf '  ok    %-34s %4d s\n' "${scripts[$i]}" "$took"
  else
    case "$rc" in 124 | 137) why="did not finish within $limit s" ;; *) why="exit status $rc" ;; esac
    printf '  FAIL  %-34s %4d s: %s; its last lines:\n' "${scripts[$i]}" "$took" "$why"
    tail -n 40 "$logs/$i.log" | sed 's/^/        /'
    failed=$((failed + 1))
  fi
done
echo "benchmarks (smoke): ${#scripts[@]} scripts, $parallel at a time, in $((SECONDS - started)) s; $failed failed"
[ "$failed" = 0 ]
