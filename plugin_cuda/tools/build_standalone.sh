#!/usr/bin/env bash
# Builds plugin_cuda's kernel library and kvq_cuda_kernel_check with nvcc and
# g++ alone (no CMake, none of the project's other dependencies), e.g. on a
# GPU machine that lacks yaml-cpp / spdlog / fmt. Same flags as CMake.
#   usage: build_standalone.sh OUT_DIR      (compiles in parallel)
set -euo pipefail
out=${1:?usage: build_standalone.sh OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
nvcc=${NVCC:-nvcc}
cxx=${CXX:-g++}
flags=(-gencode=arch=compute_90a,code=sm_90a -std=c++17 -O2 -lineinfo --expt-relaxed-constexpr
       -Xcompiler=-Wall,-Wextra -I"$here/src/kernels")
mkdir -p "$out/obj"
pids=()
for f in "$here"/src/kernels/*.cu "$here"/tools/kernel_check.cu; do
  extra=()
  [[ $f == *cache_write.cu ]] && extra=(--fmad=false)  # bit-exact writes
  "$nvcc" "${flags[@]}" "${extra[@]}" -c "$f" -o "$out/obj/$(basename "$f").o" &
  pids+=($!)
done
for f in "$here"/src/kernels/*.cpp "$here"/tools/check_host.cpp; do
  "$cxx" -std=c++17 -O2 -ffp-contract=off -Wall -Wextra -I"$here/src/kernels" \
    -c "$f" -o "$out/obj/$(basename "$f").o" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"$nvcc" -gencode=arch=compute_90a,code=sm_90a -cudart static "$out"/obj/*.o -lpthread \
  -o "$out/kvq_cuda_kernel_check"
echo "built $out/kvq_cuda_kernel_check"
