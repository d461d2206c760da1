#!/usr/bin/env bash
# The GPU checks, for one session on a lent NVIDIA GPU machine (H100/H200, a CUDA 13 driver, PyTorch with CUDA
# installed, no network). It runs from the source tree (PYTHONPATH), installs nothing, and cannot hang: every
# step has a time limit, and the default steps' limits add up to under 4 minutes, so a second run fits in a
# 15-minute session.
#
#   scripts/gpu_check.sh                      # device tests, the op suite on CUDA, the benchmark, a summary
#   GPU_CHECK_SWEEP=1 scripts/gpu_check.sh    # the benchmark also times other GPU targets (about 40 s more):
#                                             # matmul and tensor-core tiles, threads per row of softmax/layernorm
#   GPU_CHECK_PROFILE=1 scripts/gpu_check.sh  # and Nsight Compute on the matmul and softmax kernels (about 40 s)
#
# Steps: the GPU as nvidia-smi sees it; `boltgrad doctor` (CUDA's line: GPU, free memory, NVRTC); the CUDA
# device's own tests (test/cuda, GPU tests included); the op-suite modules on CUDA against PyTorch (the CPU
# oracle, as for every device: a CUDA oracle would compute convolutions in TF32); bench/gpu.py. Logs go to
# GPU_CHECK_LOG (default: a new temporary folder), the summary to stdout.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BOLT_TEST_CUDA=1  # test/helpers.py: CUDA joins every per-device test, and must work
export BOLT_CACHE_DIR=${BOLT_CACHE_DIR:-$(mktemp -d)}
LOG=${GPU_CHECK_LOG:-$(mktemp -d)}
mkdir -p "$LOG"
SUMMARY=()
FAILED=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep the log, note the verdict
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS verdict
  echo "=== $name (at most ${limit} s)"
  timeout -k 5 "$limit" "$@" 2>&1 | tee "$LOG/$name.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then
    verdict="ok"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    verdict="TIMED OUT"
    FAILED=1
  else
    verdict="FAILED (exit $rc)"
    FAILED=1
  fi
  SUMMARY+=("$(printf '  %-13s %-18s %4d s' "$name" "$verdict" $((SECONDS - start)))")
}

OPS="test/ops/test_ops.py test/ops/test_reduce.py test/ops/test_movement.py test/ops/test_dtypes.py test/ops/test_gather.py"
step gpu 10 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv
step doctor 20 "$PY" -c "from boltgrad.cli.main import main; raise SystemExit(main(['doctor']))"
# test_cuda_device.py: copies, out of memory, matmul/softmax/layernorm, training, and a jitted decode step replayed
# as a CUDA graph against plain launches (BOLT_CUDA_GRAPHS=0) and the CPU, its Variable changing every replay
step cuda_tests 38 "$PY" -m pytest -q -p no:cacheprovider -rs test/cuda/test_cuda_device.py
# shellcheck disable=SC2086
step op_suite 100 "$PY" -m pytest -q -p no:cacheprovider -n 4 -k CUDA $OPS  # 4 workers: NVRTC compiles in parallel
BENCH_LIMIT=70
[ -n "${GPU_CHECK_SWEEP:-}" ] && BENCH_LIMIT=150
step bench "$BENCH_LIMIT" "$PY" -m bench.gpu --json "$LOG/bench.json" ${GPU_CHECK_SWEEP:+--sweep}
if [ -n "${GPU_CHECK_PROFILE:-}" ]; then  # registers, occupancy, throughput of the first two reduce kernels
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  step profile 90 "${NCU:-ncu}" --section SpeedOfLight --section Occupancy --section LaunchStats \
    --section WarpStateStats --section ComputeWorkloadAnalysis -k regex:'^r_' -c 2 "$PY" -m bench.gpu_profile
fi

echo
echo "=== summary (logs in $LOG)"
printf '%s\n' "${SUMMARY[@]}"
grep -h -E "^(FAILED|ERROR) " "$LOG/cuda_tests.log" "$LOG/op_suite.log" 2>/dev/null | head -40
grep -h -E "passed|failed" "$LOG/cuda_tests.log" "$LOG/op_suite.log" 2>/dev/null | tail -2
sed -n '/^workload/,$p' "$LOG/bench.log" 2>/dev/null
grep -h -E "^  r_|Duration|Registers Per|Achieved Occupancy|Warp Cycles Per Issued|Issued Ipc Active|Memory Throughput" \
  "$LOG/profile.log" 2>/dev/null
exit $FAILED
