#!/usr/bin/env bash
# Make a sweep (manifest + code snapshot, submit timestamp fixed now, in this shell) and sbatch
# jobs/stream.sbatch over its rows:
#   jobs/submit_stream.sh <experiment> [launch overrides...] [sbatch options...] [-- sbatch options...]
# Launch overrides are configs/launch.yaml keys, e.g. 'task_overrides=["data.max_clips=8"]',
# resources.array_parallelism=2, config_dir=/x/configs; arguments starting with `-` (and all after
# `--`) go to sbatch, e.g. --partition=test. Prints the array's job id; the sweep folder goes to stderr.
set -euo pipefail
EXP=${1:?usage: jobs/submit_stream.sh <experiment> [launch overrides] [sbatch options]}; shift
LAUNCH=(); SBATCH=()
while (($#)); do
  case $1 in
    --) shift; SBATCH+=("$@"); break ;;
    -*) SBATCH+=("$1") ;;
    *) LAUNCH+=("$1") ;;
  esac
  shift
done
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${ACTLAB_PYTHON:-$HERE/.venv/bin/python}
ACTLAB_SUBMITTED=$(date -u +%Y%m%dT%H%M%SZ)
export ACTLAB_SUBMITTED
SWEEP=$("$PY" -m actlab.launch.prepare "$EXP" ${LAUNCH[@]+"${LAUNCH[@]}"})
N=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["rows"]))' "$SWEEP/manifest.json")
THROTTLE=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["resources"]["array_parallelism"])' "$SWEEP/manifest.json")
# --array above MaxArraySize is refused by sbatch: big sweeps go through `make grid` (it chunks)
ACTLAB_PYTHON=$PY sbatch --parsable --array="0-$((N - 1))%$THROTTLE" --output="$SWEEP/logs/%A_%a.out" \
  ${SBATCH[@]+"${SBATCH[@]}"} "$HERE/jobs/stream.sbatch" "$SWEEP/manifest.json"
echo "sweep: $SWEEP ($N tasks)" >&2
