#!/usr/bin/env bash
# Packs what plugin_cuda/run_gpu_tests.sh needs from a build folder into one
# xz archive (the GPU machine has no package registry and different library
# versions; the binaries built here run there with these files):
#   plugin_cuda/pack_for_gpu.sh BUILD_DIR ARCHIVE.tar.xz
# Unpack there with: mkdir g && tar -xJf ARCHIVE.tar.xz -C g
set -euo pipefail
build=$(cd "${1:?usage: pack_for_gpu.sh BUILD_DIR ARCHIVE}" && pwd)
archive=$(realpath -m "${2:?usage: pack_for_gpu.sh BUILD_DIR ARCHIVE}")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
for f in kvq_cuda_tests kvq_cuda_kernel_check kvq kvq-conform; do
  [ -x "$build/bin/$f" ] && cp "$build/bin/$f" "$stage/bin/"
done
for f in libkvq_cuda.so libkvq_triton_sim.so libkvq_ascend.so; do
  [ -f "$build/lib/$f" ] && cp "$build/lib/$f" "$stage/lib/"
done
# Shared libraries outside the C/C++ runtime that the programs link (yaml-cpp,
# spdlog, fmt: other sonames on the GPU machine's distribution).
for f in "$stage"/bin/*; do
  ldd "$f" | awk '/=> \//{print $3}' |
    grep -Ev '/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libgomp|ld-linux)[.-]' |
    grep -Ev '/(libmpi|libopen-|libhwloc|libevent|libpmix|libucp|libucs|libuct|libnl|libudev|libz|libcap|libsystemd|liblzma|libzstd|liblz4|libgcrypt|libgpg|libibverbs|librdmacm|libfabric|libpsm|libnuma|libltdl|libmunge|libbsd|libmd)' |
    xargs -r -I{} cp -L {} "$stage/lib/" || true
done
strip --strip-debug "$stage"/bin/* "$stage"/lib/*.so* 2>/dev/null || true
tar -cJf "$archive" -C "$stage" .
echo "packed $(du -h "$archive" | cut -f1) into $archive"
