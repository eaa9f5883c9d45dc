#!/usr/bin/env bash
# The accelerator check, prepared to run once in at most 545 s on a lent GPU (device tool):
#   1. update_speed.py: one donated update, ours vs Optax vs the memory-bandwidth bound;
#   2. train_speed.py: harness vs hand-written step, GFLOP/s vs the matmul peak;
#   3. the full-length CURVES NAG run (configs/curves.toml, 750,000 updates), cut at its
#      time limit if slower than expected (its metrics so far are kept);
#   4. data-parallel: the test on 4 forced CPU devices is in tests/; here a short CURVES run
#      with --data-parallel over the local GPUs (on a single GPU this checks only that the
#      sharded program compiles and runs there).
# Each part's results are copied into OUTDIR as soon as it ends, so a run cut off by the
# device's 600 s limit still returns the parts that finished. Worst case 545 s (limits below).
# Usage (repo root): bash benchmarks/gpu_check.sh [OUTDIR]   (default: $OUT, else runs/gpu_check)
# QUICK=1 shrinks every part to a smoke test that runs on a CPU in a few minutes.
# Needs jax (with its CUDA plugin), optax, flax, chex, orbax-checkpoint, tqdm and matplotlib;
# nagmom is used from this checkout (PYTHONPATH), so nothing is installed.
set -uo pipefail
DEST=$(mkdir -p "${1:-${OUT:-runs/gpu_check}}" && cd "${1:-${OUT:-runs/gpu_check}}" && pwd) || exit 1
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD:$PWD/benchmarks:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [[ "${QUICK:-0}" == 1 ]]; then
  UPDATE=(--sizes 1e5 1e6 --repeats 2); TRAIN=(--nets curves --steps 5 --repeats 2)
  CURVES=(--steps 200 --log-every 100); PARALLEL=(--steps 100 --log-every 50)
  LIMIT=(60 120 120 120)
else
  UPDATE=(--repeats 9); TRAIN=(--steps 200 --repeats 5)
  # CURVES logs every 5,000 updates (its config's value), so that the Ctrl-C at the time limit
  # lands within the 20 s grace: a chunk, an evaluation and the checkpoint take seconds.
  CURVES=(--log-every 5000 --no-progress); PARALLEL=(--steps 3000 --log-every 1000)
  # 30 s for jax to start + these + 5 s kill grace each, 20 s for CURVES to save: 545 s.
  LIMIT=(90 120 220 45)
fi
# At most 8 files come back from the device: keep the results, not the checkpoints.
keep() { cp "$1" "$DEST/$2" 2>/dev/null || echo "(no $1)"; }
# timeout returns 124 when it fires; --preserve-status gives the program's own status instead.
# KILL_AFTER: seconds between the signal and a kill (the CURVES run needs them to save).
limited() { timeout --preserve-status -k "${KILL_AFTER:-5}" "$@"; }
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  limited 30 $PY -c "import jax, optax, flax; print('jax', jax.__version__, jax.devices(), 'optax', optax.__version__, 'flax', flax.__version__)"
  limited "${LIMIT[0]}" $PY benchmarks/update_speed.py "${UPDATE[@]}" --out "$WORK/update"
  echo "update_speed exit $?"
  keep "$WORK/update/update_speed.json" update_speed.json
  limited "${LIMIT[1]}" $PY benchmarks/train_speed.py "${TRAIN[@]}" --out "$WORK/train"
  echo "train_speed exit $?"
  keep "$WORK/train/train_speed.json" train_speed.json
  KILL_AFTER=20 limited -s INT "${LIMIT[2]}" $PY benchmarks/autoencoder.py --config configs/curves.toml \
    "${CURVES[@]}" --out "$WORK/curves"
  echo "curves exit $? (130: stopped at the time limit, state saved)"
  keep "$WORK/curves/metrics.jsonl" curves_metrics.jsonl
  keep "$WORK/curves/summary.json" curves_summary.json
  limited "${LIMIT[3]}" $PY benchmarks/autoencoder.py "${PARALLEL[@]}" --data-parallel \
    --no-progress --out "$WORK/parallel"
  echo "data-parallel exit $?"
  keep "$WORK/parallel/summary.json" parallel_summary.json
} 2>&1 | tee "$DEST/gpu_check.log"
ls -l "$DEST"
