# Runs `kvq bench --quick` and checks that the table has every row: each
# case kind (decode x4, prefill, mixed, write) for each mode, thread count
# and head layout, and no row reports an error. Timing values are not checked.
# cmake -DKVQ=path/to/kvq -P check_bench_table.cmake
execute_process(COMMAND ${KVQ} bench --quick --min-time 0 --log-level warn
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "kvq bench --quick exited with ${rc}\n${out}\n${err}")
endif()
foreach(needle "| threads | read GB/s | triad GB/s |" "| case | shape | heads q/kv | mode | thr |")
  string(FIND "${out}" "${needle}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "missing '${needle}' in\n${out}")
  endif()
endforeach()
set(missing "")
foreach(heads "32/8" "8/8")
  foreach(mode bf16 fp8_per_tensor int8_pth fp8_pth int4_pth C8)
    foreach(thr 1 2)
      foreach(kind_count "decode:4" "prefill:1" "mixed:1" "write:1")
        string(REPLACE ":" ";" kc "${kind_count}")
        list(GET kc 0 kind)
        list(GET kc 1 count)
        # A row with a time: "| kind | shape | heads | mode | thr | 1.234 |".
        string(REGEX MATCHALL
          "\n\\| ${kind} \\| [^|]+ \\| ${heads} \\| ${mode} \\| ${thr} \\| [0-9]+\\.[0-9]+ \\|"
          rows "${out}")
        list(LENGTH rows n)
        if(NOT n EQUAL count)
          string(APPEND missing "${kind} ${heads} ${mode} threads ${thr}: ${n} rows, want ${count}\n")
        endif()
      endforeach()
    endforeach()
  endforeach()
endforeach()
if(missing)
  message(FATAL_ERROR "kvq bench --quick table is incomplete:\n${missing}\n${out}")
endif()
