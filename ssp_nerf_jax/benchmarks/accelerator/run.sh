#!/usr/bin/env bash
# Runs the accelerator check from a bundle made by prepare.sh; everything it
# writes goes under OUT:
#
#   bash BUNDLE/run.sh OUT [accelerator_check flags, e.g. --smoke]
#
#   OUT/site/         the bundle's wheels that this machine lacks
#   OUT/clip/         the preprocessed clip
#   OUT/check/        accelerator_check.json (also printed), the dataset
#                     build and the clip's training run
#   OUT/stderr.log    progress bars and logs
#
# PYTHON (default python3) runs the check and PIP (default "$PYTHON -m pip")
# installs; a PYTHONPATH given is searched after the bundle's.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 OUT [accelerator_check flags]" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
shift
PYTHON=${PYTHON:-python3}
PIP=${PIP:-$PYTHON -m pip}

# Packages already installed keep the machine's version.
missing=()
for wheel in "$HERE"/wheels/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1)
  if ! $PYTHON -c 'import importlib.metadata as m, sys; m.version(sys.argv[1])' \
      "$name" 2>/dev/null; then
    missing+=("$wheel")
  fi
done
echo "installing ${#missing[@]} of $(ls "$HERE"/wheels/*.whl | wc -l) wheels into $OUT/site"
if (( ${#missing[@]} )); then
  $PIP install --quiet --no-index --no-deps --target "$OUT/site" "${missing[@]}"
fi
rm -rf "$OUT/clip"
tar -xzf "$HERE/clip.tar.gz" -C "$OUT"

# mediapipe's solutions package imports matplotlib for its drawing helpers,
# which the face mesh never calls; matplotlib would not fit in the carried
# size, so where it is absent an empty stand-in takes its place.
stubs=
if ! $PYTHON -c 'import matplotlib.pyplot' 2>/dev/null; then
  stubs=$OUT/stubs
  mkdir -p "$stubs/matplotlib"
  touch "$stubs/matplotlib/__init__.py" "$stubs/matplotlib/pyplot.py"
  echo "no matplotlib here: an empty stand-in for mediapipe's drawing helpers"
fi
export PYTHONPATH="$OUT/site:$HERE/src${PYTHONPATH:+:$PYTHONPATH}${stubs:+:$stubs}"
export PYTHONUNBUFFERED=1 PYTHONNOUSERSITE=1
export SSP_NERF_DATA_DIR="$OUT/check/data"
export MPLCONFIGDIR="$OUT/mpl"
cd "$OUT"
$PYTHON -c 'import ssp_nerf_jax; print("ssp_nerf_jax from", ssp_nerf_jax.__file__)'
status=0
$PYTHON -m ssp_nerf_jax.benchmarks.accelerator_check --out="$OUT/check" \
  --clip="$OUT/clip" --config="$HERE/src/configs/default.py" \
  --clip_config="$HERE/src/configs/video.py" --commit="$(cat "$HERE/COMMIT")" \
  "$@" 2> "$OUT/stderr.log" || status=$?
if (( status )); then
  tail -n 30 "$OUT/stderr.log" >&2
  # the parts that ended before the failure
  cat "$OUT/check/accelerator_check.json" 2>/dev/null || true
fi
exit "$status"
