#!/usr/bin/env bash
# The accelerator check of ltjax, in one call: scripts/device_check.sh OUT [WHEELS]
#
# For a machine with jax[cuda] (or jax[tpu]), torch, pytest and ltjax's common dependencies
# (numpy, scikit-learn, Pillow, matplotlib, tqdm, absl-py) preinstalled and no network. It
# installs what else ltjax needs from the folder WHEELS (default .whl; built elsewhere with
# the `pip download` commands in README.md, "Running on GPUs and TPUs"), ltjax's flax /
# optax / orbax-checkpoint from WHEELS/core ahead of any the machine has (falling back to the
# machine's if ltjax does not import with them), runs the tests marked `accelerator`, then
# scripts/device_check.py (train step against PyTorch, the demo) and the memory plan.
# Everything goes to OUT/device_check.log, the figures to OUT/device_check.json. On a
# CPU-only machine `QUICK=1 scripts/device_check.sh OUT none` is the dry run (the
# accelerator tests skip themselves there).
set -uo pipefail
out=${1:?usage: scripts/device_check.sh OUT [WHEELS]}
wheels=${2:-.whl}
cd "$(dirname "$0")/.."
mkdir -p "$out"
exec > >(tee -a "$out/device_check.log") 2>&1
echo "== ltjax device check, $(date -u), $(uname -m), $(python3 --version)"
nvidia-smi -L 2>/dev/null || true
site=$(mktemp -d)
path="$PWD"
if ls "$wheels"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site/deps" "$wheels"/*.whl
  path="$path:$site/deps"
fi
if ls "$wheels"/core/*.whl >/dev/null 2>&1; then
  # ltjax's tested flax / optax / orbax-checkpoint, ahead of the machine's own.
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site/core" "$wheels"/core/*.whl
  export PYTHONPATH="$path:$site/core"
  if ! python3 -c "import ltjax.train.loop" 2>"$out/import_error.txt"; then
    echo "ltjax does not import with the wheels' flax/optax/orbax (see import_error.txt): using the machine's"
    export PYTHONPATH="$path"
  fi
else
  export PYTHONPATH="$path"
fi
python3 -c "import ltjax.train.loop" || { echo "ltjax does not import"; exit 1; }
echo "== accelerator tests"
JAX_PLATFORMS="${JAX_PLATFORMS:-}" python3 -m pytest -q -m accelerator tests/test_accelerator.py \
  -p no:cacheprovider 2>&1 | tail -25
echo "== benchmarks and demo"
# JAX and PyTorch share the accelerator here: JAX takes half of its memory, not 75%.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}
python3 scripts/device_check.py --out "$out" ${QUICK:+--quick}
status=$?
echo "== memory plan on this device (per-device figures of an 8-device run)"
configs=${MEMORY_CONFIGS:-imagenet_lt/oltr_stage2.py,imagenet_lt/joint_instance.py,places_lt/joint.py}
python3 scripts/memory_plan.py --devices 1 --split_over 8 --configs "$configs" \
  --json_out "$out/memory_plan.json" || status=1
echo "== done (status $status): $out/device_check.json"
exit $status
