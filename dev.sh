#!/usr/bin/env bash
# kvq developer entry point; works on a fresh Debian machine.
#   ./dev.sh main   install deps, build kvq and the CPU plugins only, run the host on its
#                   embedded default deployment
#   ./dev.sh test   install deps, build, run every test (what CI runs): ctest, then the
#                   fuzz targets (.ci/fuzz.sh, FUZZ_SECONDS each), then the sanitizer
#                   builds (.ci/sanitizers.sh: ASan+UBSan, TSan)
#   ./dev.sh quick  install deps, build, ctest -L quick (the edit loop, about a minute)
#   ./dev.sh deps | build
set -euo pipefail
cd "$(dirname "$0")"

BUILD_DIR=${KVQ_BUILD_DIR:-build}
DEPS=(cmake make g++ gcc binutils pkg-config libyaml-cpp-dev libspdlog-dev libfmt-dev
      nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev
      libopenmpi-dev openmpi-bin  # multi-rank tensor parallelism (mpirun -np N kvq run)
      clang libclang-rt-14-dev libomp-14-dev llvm)  # fuzzing (libFuzzer) and symbolized sanitizer reports

deps() {
  local missing=()
  for p in "${DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "installing: ${missing[*]}"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
  fi
}

configure() {
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo
}

build() {  # everything, or the targets named
  configure
  if (($#)); then
    cmake --build "$BUILD_DIR" -j"$(nproc)" --target "$@"
  else
    cmake --build "$BUILD_DIR" -j"$(nproc)"
  fi
}

run_ctest() {  # extra ctest arguments, e.g. -L quick
  ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 600 "$@"
}

# Runs one part of a job and prints how long it took, so a slow CI log says
# which part was slow; the summary of every part is printed at exit, also on failure.
STAGE_TIMES=()
JOB_START=$SECONDS
stage() {  # name, command...
  local name=$1 start=$SECONDS
  shift
  echo "== [$(date -u +%H:%M:%S), $(((SECONDS - JOB_START) / 60)) min in] $name"
  "$@"
  STAGE_TIMES+=("$(printf '%-12s %5d s' "$name" $((SECONDS - start)))")
}
print_stage_times() {
  ((${#STAGE_TIMES[@]})) || return 0
  echo "== time per part (total $((SECONDS - JOB_START)) s):"
  printf '   %s\n' "${STAGE_TIMES[@]}"
}
trap print_stage_times EXIT

case "${1:-}" in
  deps) deps ;;
  build) deps; build ;;
  main) deps; build kvq kvq_triton_sim kvq_ascend; "$BUILD_DIR/bin/kvq" run ;;
  quick) deps; build; run_ctest -L quick ;;
  test)
    stage deps deps
    stage build build
    stage ctest run_ctest
    stage fuzz .ci/fuzz.sh
    stage sanitizers .ci/sanitizers.sh
    ;;
  *) echo "usage: $0 main|test|quick|deps|build" >&2; exit 2 ;;
esac
