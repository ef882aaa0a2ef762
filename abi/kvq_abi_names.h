/*
 * kvq_abi_names.h — names and sizes of kvq_abi.h's enum values, for hosts and
 * plugins alike (messages, logs, reports). Header-only (static inline), plain
 * C11 and C++, so no library is shared between a host and its plugins.
 * Unknown values give "?" / 0: a newer peer may send values this file does
 * not know yet.
 */
#ifndef KVQ_ABI_NAMES_H
#define KVQ_ABI_NAMES_H

#include "kvq_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "INVALID_ARGUMENT", ... for KVQ_ERR_*; "OK" for 0. */
static inline const char* kvq_error_code_name(int32_t code) {
  switch (code) {
    case 0: return "OK";
    case KVQ_ERR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case KVQ_ERR_UNSUPPORTED: return "UNSUPPORTED";
    case KVQ_ERR_VERSION_MISMATCH: return "VERSION_MISMATCH";
    case KVQ_ERR_OUT_OF_RANGE: return "OUT_OF_RANGE";
    case KVQ_ERR_NOT_FOUND: return "NOT_FOUND";
    case KVQ_ERR_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case KVQ_ERR_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case KVQ_ERR_NON_FINITE: return "NON_FINITE";
    case KVQ_ERR_INTERNAL: return "INTERNAL";
    case KVQ_ERR_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    default: return "?";
  }
}

/* "F32", "BF16", ... for KVQ_DTYPE_* (the safetensors spellings). */
static inline const char* kvq_dtype_name(int32_t dtype) {
  switch (dtype) {
    case KVQ_DTYPE_F32: return "F32";
    case KVQ_DTYPE_F16: return "F16";
    case KVQ_DTYPE_BF16: return "BF16";
    case KVQ_DTYPE_I8: return "I8";
    case KVQ_DTYPE_U8: return "U8";
    case KVQ_DTYPE_F8_E4M3FN: return "F8_E4M3";
    case KVQ_DTYPE_F8_E5M2: return "F8_E5M2";
    case KVQ_DTYPE_I32: return "I32";
    case KVQ_DTYPE_I64: return "I64";
    case KVQ_DTYPE_F64: return "F64";
    default: return "?";
  }
}

/* Bytes per element of KVQ_DTYPE_*; 0 for an unknown dtype. */
static inline int64_t kvq_dtype_size(int32_t dtype) {
  switch (dtype) {
    case KVQ_DTYPE_I8:
    case KVQ_DTYPE_U8:
    case KVQ_DTYPE_F8_E4M3FN:
    case KVQ_DTYPE_F8_E5M2: return 1;
    case KVQ_DTYPE_F16:
    case KVQ_DTYPE_BF16: return 2;
    case KVQ_DTYPE_F32:
    case KVQ_DTYPE_I32: return 4;
    case KVQ_DTYPE_I64:
    case KVQ_DTYPE_F64: return 8;
    default: return 0;
  }
}

/* "cpu", "cuda", "opaque" for KVQ_DEVICE_*. */
static inline const char* kvq_device_type_name(int32_t device_type) {
  switch (device_type) {
    case KVQ_DEVICE_CPU: return "cpu";
    case KVQ_DEVICE_CUDA: return "cuda";
    case KVQ_DEVICE_OPAQUE: return "opaque";
    default: return "?";
  }
}

/* "PREFILL_NO_CACHE", ... for KVQ_ATTN_* (vllm-ascend's spellings). */
static inline const char* kvq_attention_state_name(int32_t state) {
  switch (state) {
    case KVQ_ATTN_PREFILL_NO_CACHE: return "PREFILL_NO_CACHE";
    case KVQ_ATTN_PREFILL_CACHE_HIT: return "PREFILL_CACHE_HIT";
    case KVQ_ATTN_DECODE_ONLY: return "DECODE_ONLY";
    case KVQ_ATTN_CHUNKED_PREFILL: return "CHUNKED_PREFILL";
    case KVQ_ATTN_SPEC_DECODING: return "SPEC_DECODING";
    default: return "?";
  }
}

/* "trace" ... "error" for KVQ_LOG_*. */
static inline const char* kvq_log_level_name(int32_t level) {
  switch (level) {
    case KVQ_LOG_TRACE: return "trace";
    case KVQ_LOG_DEBUG: return "debug";
    case KVQ_LOG_INFO: return "info";
    case KVQ_LOG_WARN: return "warn";
    case KVQ_LOG_ERROR: return "error";
    default: return "?";
  }
}

/* "k_scale", ... for KVQ_PARAM_ROLE_*. */
static inline const char* kvq_param_role_name(int32_t role) {
  switch (role) {
    case KVQ_PARAM_ROLE_OTHER: return "other";
    case KVQ_PARAM_ROLE_K_SCALE: return "k_scale";
    case KVQ_PARAM_ROLE_V_SCALE: return "v_scale";
    case KVQ_PARAM_ROLE_Q_SCALE: return "q_scale";
    case KVQ_PARAM_ROLE_KV_SCALE: return "kv_scale";
    case KVQ_PARAM_ROLE_K_CHANNEL_SCALE: return "k_channel_scale";
    case KVQ_PARAM_ROLE_K_CHANNEL_OFFSET: return "k_channel_offset";
    case KVQ_PARAM_ROLE_V_CHANNEL_SCALE: return "v_channel_scale";
    case KVQ_PARAM_ROLE_V_CHANNEL_OFFSET: return "v_channel_offset";
    case KVQ_PARAM_ROLE_DERIVED: return "derived";
    default: return "?";
  }
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVQ_ABI_NAMES_H */
