#!/usr/bin/env bash
# The GPU test set and benchmark of plugin_cuda, on a machine with an NVIDIA
# GPU, given a build folder (bin/, lib/ as CMake lays them out; a folder
# unpacked from plugin_cuda/pack_for_gpu.sh works too):
#   plugin_cuda/run_gpu_tests.sh BUILD_DIR [OUT_DIR] [--quick]
# Runs, logging each to OUT_DIR (default: BUILD_DIR/gpu-logs):
#   1. kvq_cuda_kernel_check: kernels vs float64 and host codecs, refusal paths
#   2. kvq_cuda_tests: the plugin through the ABI vs libkvq_triton_sim.so
#   3. compute-sanitizer memcheck and racecheck over a quick subset of (2)
#   4. kvq-conform on libkvq_cuda.so (when bin/kvq-conform is there)
#   5. kvq_cuda_bench: the benchmark table (log) and OUT_DIR/gpu_bench.json
#      (--quick: small sizes). It links the CUDA toolkit's cuBLAS, which the
#      packed folder does not carry: found here in the usual places.
#   6. kvq run: each deploy/cuda_*.yaml (TP 1) served on the GPU and its
#      deploy/triton_*.yaml twin on the CPU (JSON reports in OUT_DIR), then
#      kvq compare of the two (same workload, same accuracy check).
# Exits non-zero when a step fails; every step runs regardless.
set -uo pipefail
build=$(cd "${1:?usage: run_gpu_tests.sh BUILD_DIR [OUT_DIR] [--quick]}" && pwd)
out=${2:-$build/gpu-logs}
quick=${3:-}
mkdir -p "$out"
export KVQ_CUDA_PLUGIN=$build/lib/libkvq_cuda.so
export KVQ_TRITON_PLUGIN=$build/lib/libkvq_triton_sim.so
export LD_LIBRARY_PATH=$build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# A packed folder carries the golden vectors (pack_for_gpu.sh).
[ -d "$build/vectors" ] && export KVQ_VECTORS_DIR=$build/vectors
status=0
step() {  # name, command...
  local name=$1
  shift
  echo "== $name: $*"
  local t0=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - t0)) s; last lines:"
  tail -n 12 "$out/$name.log" | sed 's/^/   | /'
  [ $rc -eq 0 ] || status=1
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv \
  >"$out/nvidia-smi.log" 2>&1
cat "$out/nvidia-smi.log"
if [ -x "$build/bin/kvq_cuda_kernel_check" ]; then
  step kernel_check "$build/bin/kvq_cuda_kernel_check"
fi
step cuda_tests "$build/bin/kvq_cuda_tests" --gtest_brief=1
subset='CudaPlugin.*:Modes/CudaPluginModes.WritesTheCpuPluginsBytes/*'
if command -v compute-sanitizer >/dev/null; then
  step memcheck compute-sanitizer --tool memcheck --error-exitcode 1 \
    "$build/bin/kvq_cuda_tests" --gtest_brief=1 --gtest_filter="$subset"
  step racecheck compute-sanitizer --tool racecheck --error-exitcode 1 \
    "$build/bin/kvq_cuda_tests" --gtest_brief=1 \
    --gtest_filter='Modes/CudaPluginModes.AttentionMatchesTheCpuPluginAcrossDevices/int8*'
fi
if [ -x "$build/bin/kvq" ]; then
  step inspect "$build/bin/kvq" inspect "$KVQ_CUDA_PLUGIN"
fi
if [ -x "$build/bin/kvq-conform" ]; then
  step conform "$build/bin/kvq-conform" --timeout 240 "$KVQ_CUDA_PLUGIN"
fi
if [ -x "$build/bin/kvq_cuda_bench" ]; then
  bench_libs=$LD_LIBRARY_PATH
  if ldd "$build/bin/kvq_cuda_bench" | grep -q 'libcublas.*not found'; then
    cublas=$( (ls -d /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
                 2>/dev/null; find /usr/local /opt /usr/lib -name 'libcublas.so.13' 2>/dev/null) |
              while read -r p; do
                d=$p; [ -d "$d" ] || d=$(dirname "$p")
                [ -e "$d/libcublas.so.13" ] && [ -e "$d/libcublasLt.so.13" ] && { echo "$d"; break; }
              done)
    echo "   libcublas.so.13 for kvq_cuda_bench: ${cublas:-NOT FOUND}"
    [ -n "$cublas" ] && bench_libs=$bench_libs:$cublas
  fi
  step bench env LD_LIBRARY_PATH="$bench_libs" "$build/bin/kvq_cuda_bench" ${quick:+--quick} \
    --json "$out/gpu_bench.json"
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -x "$build/bin/kvq" ]; then
  for gpu in "$repo"/deploy/cuda_*.yaml; do
    case $gpu in *_tp[0-9]*.yaml) continue ;; esac  # TP needs mpirun and a GPU per rank
    mode=$(basename "$gpu" .yaml)
    mode=${mode#cuda_}
    step "serve_gpu_$mode" "$build/bin/kvq" run "$gpu" --no-progress --json "$out/serve_gpu_$mode.json"
    step "serve_cpu_$mode" "$build/bin/kvq" run "$repo/deploy/triton_$mode.yaml" --no-progress \
      --json "$out/serve_cpu_$mode.json"
    step "compare_$mode" "$build/bin/kvq" compare "$out/serve_cpu_$mode.json" \
      "$out/serve_gpu_$mode.json"
  done
fi
echo "gpu tests: $([ $status -eq 0 ] && echo passed || echo FAILED)"
exit $status
