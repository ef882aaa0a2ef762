#!/usr/bin/env bash
# Builds plugin_cuda's kernel library, kvq_cuda_kernel_check and
# kvq_cuda_bench with nvcc and g++ alone (no CMake, none of the project's
# other dependencies), e.g. on a GPU machine that lacks yaml-cpp / spdlog /
# fmt. Same flags as CMake. kvq_cuda_bench links the toolkit's cuBLAS
# (-lcublas); it is skipped when the toolkit has none.
#   usage: build_standalone.sh OUT_DIR      (compiles in parallel)
set -euo pipefail
out=${1:?usage: build_standalone.sh OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
nvcc=${NVCC:-nvcc}
cxx=${CXX:-g++}
arch=-gencode=arch=compute_90a,code=sm_90a
flags=("$arch" -std=c++17 -O2 -lineinfo --expt-relaxed-constexpr
       -Xcompiler=-Wall,-Wextra -I"$here/src/kernels")
mkdir -p "$out/obj" "$out/tools"
pids=()
for f in "$here"/src/kernels/*.cu; do
  extra=()
  [[ $f == *cache_write.cu ]] && extra=(--fmad=false)  # bit-exact writes
  "$nvcc" "${flags[@]}" "${extra[@]}" -c "$f" -o "$out/obj/$(basename "$f").o" &
  pids+=($!)
done
for f in "$here"/tools/kernel_check.cu "$here"/tools/gpu_bench.cu "$here"/tools/gpu_bench_util.cu; do
  "$nvcc" "${flags[@]}" -c "$f" -o "$out/tools/$(basename "$f").o" &
  pids+=($!)
done
for f in "$here"/src/kernels/*.cpp; do
  "$cxx" -std=c++17 -O2 -ffp-contract=off -Wall -Wextra -I"$here/src/kernels" \
    -c "$f" -o "$out/obj/$(basename "$f").o" &
  pids+=($!)
done
for f in "$here"/tools/check_host.cpp "$here"/tools/gpu_bench_report.cpp; do
  "$cxx" -std=c++17 -O2 -ffp-contract=off -Wall -Wextra -I"$here/src/kernels" \
    -c "$f" -o "$out/tools/$(basename "$f").o" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"$nvcc" "$arch" -cudart static "$out"/obj/*.o "$out/tools/kernel_check.cu.o" \
  "$out/tools/check_host.cpp.o" -lpthread -o "$out/kvq_cuda_kernel_check"
echo "built $out/kvq_cuda_kernel_check"
if "$nvcc" "$arch" -cudart static "$out"/obj/*.o "$out/tools/gpu_bench.cu.o" \
     "$out/tools/gpu_bench_util.cu.o" "$out/tools/gpu_bench_report.cpp.o" -lcublas -lpthread \
     -o "$out/kvq_cuda_bench"; then
  echo "built $out/kvq_cuda_bench"
else
  echo "kvq_cuda_bench not built (no cuBLAS to link?)" >&2
fi
