#!/usr/bin/env bash
# The GPU test set and benchmark of plugin_cuda, on a machine with an NVIDIA
# GPU, given a build folder (bin/, lib/ as CMake lays them out; a folder
# unpacked from plugin_cuda/pack_for_gpu.sh works too):
#   plugin_cuda/run_gpu_tests.sh BUILD_DIR [OUT_DIR] [--quick]
# Runs, logging each to OUT_DIR (default: BUILD_DIR/gpu-logs):
#   1. kvq_cuda_kernel_check: kernels vs float64 and host codecs, decode timings
#   2. kvq_cuda_tests: the plugin through the ABI vs libkvq_triton_sim.so
#   3. compute-sanitizer memcheck and racecheck over a quick subset of (2)
#   4. kvq-conform on libkvq_cuda.so (when bin/kvq-conform is there)
#   5. kvq bench --device gpu (when bin/kvq is there; skipped with --quick)
# Exits non-zero when a step fails; every step runs regardless.
set -uo pipefail
build=$(cd "${1:?usage: run_gpu_tests.sh BUILD_DIR [OUT_DIR] [--quick]}" && pwd)
out=${2:-$build/gpu-logs}
quick=${3:-}
mkdir -p "$out"
export KVQ_CUDA_PLUGIN=$build/lib/libkvq_cuda.so
export KVQ_TRITON_PLUGIN=$build/lib/libkvq_triton_sim.so
export LD_LIBRARY_PATH=$build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
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
  step kernel_check "$build/bin/kvq_cuda_kernel_check" ${quick:+--quick}
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
if [ -x "$build/bin/kvq-conform" ]; then
  step conform "$build/bin/kvq-conform" --timeout 600 "$KVQ_CUDA_PLUGIN"
fi
if [ -z "$quick" ] && [ -x "$build/bin/kvq" ]; then
  step bench "$build/bin/kvq" bench --device gpu --plugin "$KVQ_CUDA_PLUGIN" --json "$out/bench.json"
fi
echo "gpu tests: $([ $status -eq 0 ] && echo passed || echo FAILED)"
exit $status
