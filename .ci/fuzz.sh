#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang + ASan + UBSan) and runs each for
# FUZZ_SECONDS (default 60) from its committed seed corpus. Fails when a
# target crashes, leaks, times out on an input, or breaks an invariant; the
# input is kept in $FUZZ_DIR/artifacts/. See fuzz/README.md to run longer.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_DIR=${KVQ_FUZZ_DIR:-build-fuzz}
JOBS=${JOBS:-$(nproc)}
TARGETS=(safetensors deployment quant_description forward_descriptor checkpoint_dir)

# -O1 everywhere (KVQ_PLUGIN_OPT too): fast enough to fuzz, quick to build.
cmake -S . -B "$FUZZ_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DKVQ_PLUGIN_OPT=-O1 -DKVQ_FUZZ=ON -DKVQ_BUILD_TESTS=OFF -DKVQ_BUILD_BENCH=OFF -DKVQ_BUILD_CUDA=OFF >/dev/null
cmake --build "$FUZZ_DIR" --target kvq_fuzz -j"$JOBS"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$FUZZ_DIR/artifacts" "$FUZZ_DIR/logs"
failed=()
for target in "${TARGETS[@]}"; do
  work="$FUZZ_DIR/corpus/$target"  # new inputs go here; the committed seeds stay as they are
  mkdir -p "$work"
  log="$FUZZ_DIR/logs/$target.log"
  echo "== fuzz_$target for ${FUZZ_SECONDS}s"
  start=$SECONDS
  # One worker, bounded memory and time per input (a hang is a failure too).
  # libFuzzer stops by itself after -max_total_time; the outer timeout is
  # there so that nothing libFuzzer fails to interrupt can stall CI.
  if timeout -k 10 $((FUZZ_SECONDS + 120)) \
      "$FUZZ_DIR/bin/fuzz_$target" -max_total_time="$FUZZ_SECONDS" -timeout=20 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$FUZZ_DIR/artifacts/$target-" \
      "$work" "fuzz/corpus/$target" >"$log" 2>&1 </dev/null; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "   ok: ${runs:-?} executions in $((SECONDS - start)) s," \
      "corpus $(ls "$work" | wc -l) new + $(ls "fuzz/corpus/$target" | wc -l) seeds"
  else
    rc=$?
    if ((rc == 124 || rc == 137)); then
      echo "   FAILED: still running $((FUZZ_SECONDS + 120)) s after its start (killed); last lines of $log:"
      tail -5 "$log"
    fi
    echo "   FAILED (log: $log, input: $FUZZ_DIR/artifacts/$target-*)"
    grep -E "ERROR|SUMMARY|invariant|deadly|Test unit written" "$log" | head -20 || true
    failed+=("$target")
  fi
done
if ((${#failed[@]})); then
  echo "fuzzing failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: all ${#TARGETS[@]} targets ran ${FUZZ_SECONDS}s without a failure"
