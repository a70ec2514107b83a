#!/usr/bin/env bash
# Make a sweep (manifest + code snapshot, submit timestamp fixed now, in this shell) and sbatch
# jobs/stream.sbatch over its rows:  jobs/submit_stream.sh <experiment> [sbatch options...]
set -euo pipefail
EXP=${1:?usage: jobs/submit_stream.sh <experiment> [sbatch options]}; shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${ACTLAB_PYTHON:-$HERE/.venv/bin/python}
export ACTLAB_SUBMITTED=$(date -u +%Y%m%dT%H%M%SZ)
SWEEP=$("$PY" -m actlab.launch.prepare "$EXP")
N=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["rows"]))' "$SWEEP/manifest.json")
THROTTLE=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["resources"]["array_parallelism"])' "$SWEEP/manifest.json")
ACTLAB_PYTHON=$PY sbatch --parsable --array="0-$((N - 1))%$THROTTLE" --output="$SWEEP/logs/%A_%a.out" \
  "$@" "$HERE/jobs/stream.sbatch" "$SWEEP/manifest.json"
echo "sweep: $SWEEP ($N tasks)" >&2
