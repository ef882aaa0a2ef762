/*
 * abi_layout_test.c — freezes the released v1.0 and v1.1 layouts of kvq_abi.h.
 *
 * Every struct that crosses the plugin boundary has its size, alignment and
 * the offset and size of every field pinned here (LP64 values, computed once
 * from the v1.0 header and written down as literals). A plugin built against
 * v1.0 and a host built against a later minor must agree on all of them, so
 * any edit that moves a field, changes a type or inserts a member fails to
 * compile here. Appending fields in a new minor is the only legal change: add
 * pins for the new fields and leave the old lines untouched.
 *
 * Enum values, the entry symbol and the *_SIZE macros are part of the
 * contract as well and are pinned below too.
 *
 * Plain C11 on purpose: this is what a C host sees.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kvq_abi.h"

/* Size of one member, without needing an object of the struct type. */
#define FIELD_SIZE(type, field) sizeof(((type*)0)->field)

/* ------------------------------------------------------------- constants */

_Static_assert(KVQ_ABI_MAJOR == 1, "this file pins ABI major 1");
_Static_assert(KVQ_MAX_DIMS == 8, "KVQ_MAX_DIMS");
_Static_assert(sizeof(void*) == 8 && sizeof(double) == 8, "pinned values are LP64");

_Static_assert(KVQ_ERR_INVALID_ARGUMENT == 1, "KVQ_ERR_INVALID_ARGUMENT");
_Static_assert(KVQ_ERR_UNSUPPORTED == 2, "KVQ_ERR_UNSUPPORTED");
_Static_assert(KVQ_ERR_VERSION_MISMATCH == 3, "KVQ_ERR_VERSION_MISMATCH");
_Static_assert(KVQ_ERR_OUT_OF_RANGE == 4, "KVQ_ERR_OUT_OF_RANGE");
_Static_assert(KVQ_ERR_NOT_FOUND == 5, "KVQ_ERR_NOT_FOUND");
_Static_assert(KVQ_ERR_ALREADY_EXISTS == 6, "KVQ_ERR_ALREADY_EXISTS");
_Static_assert(KVQ_ERR_FAILED_PRECONDITION == 7, "KVQ_ERR_FAILED_PRECONDITION");
_Static_assert(KVQ_ERR_NON_FINITE == 8, "KVQ_ERR_NON_FINITE");
_Static_assert(KVQ_ERR_INTERNAL == 9, "KVQ_ERR_INTERNAL");
_Static_assert(KVQ_ERR_OUT_OF_MEMORY == 10, "KVQ_ERR_OUT_OF_MEMORY");

_Static_assert(KVQ_DTYPE_F32 == 1, "KVQ_DTYPE_F32");
_Static_assert(KVQ_DTYPE_F16 == 2, "KVQ_DTYPE_F16");
_Static_assert(KVQ_DTYPE_BF16 == 3, "KVQ_DTYPE_BF16");
_Static_assert(KVQ_DTYPE_I8 == 4, "KVQ_DTYPE_I8");
_Static_assert(KVQ_DTYPE_U8 == 5, "KVQ_DTYPE_U8");
_Static_assert(KVQ_DTYPE_F8_E4M3FN == 6, "KVQ_DTYPE_F8_E4M3FN");
_Static_assert(KVQ_DTYPE_F8_E5M2 == 7, "KVQ_DTYPE_F8_E5M2");
_Static_assert(KVQ_DTYPE_I32 == 8, "KVQ_DTYPE_I32");
_Static_assert(KVQ_DTYPE_I64 == 9, "KVQ_DTYPE_I64");
_Static_assert(KVQ_DTYPE_F64 == 10, "KVQ_DTYPE_F64");

_Static_assert(KVQ_DEVICE_CPU == 1, "KVQ_DEVICE_CPU");

_Static_assert(KVQ_LOG_TRACE == 1, "KVQ_LOG_TRACE");
_Static_assert(KVQ_LOG_DEBUG == 2, "KVQ_LOG_DEBUG");
_Static_assert(KVQ_LOG_INFO == 3, "KVQ_LOG_INFO");
_Static_assert(KVQ_LOG_WARN == 4, "KVQ_LOG_WARN");
_Static_assert(KVQ_LOG_ERROR == 5, "KVQ_LOG_ERROR");

_Static_assert(KVQ_ATTN_PREFILL_NO_CACHE == 1, "KVQ_ATTN_PREFILL_NO_CACHE");
_Static_assert(KVQ_ATTN_PREFILL_CACHE_HIT == 2, "KVQ_ATTN_PREFILL_CACHE_HIT");
_Static_assert(KVQ_ATTN_DECODE_ONLY == 3, "KVQ_ATTN_DECODE_ONLY");
_Static_assert(KVQ_ATTN_CHUNKED_PREFILL == 4, "KVQ_ATTN_CHUNKED_PREFILL");
_Static_assert(KVQ_ATTN_SPEC_DECODING == 5, "KVQ_ATTN_SPEC_DECODING");

_Static_assert(KVQ_CACHE_LAYOUT_BLOCK_KV_SLOT_HEAD == 1, "KVQ_CACHE_LAYOUT_BLOCK_KV_SLOT_HEAD");
_Static_assert(KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD == 2, "KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD");

/* struct_size values a v1.0 caller sends (also asserted in the header). */
_Static_assert(KVQ_TENSOR_SIZE == 160, "KVQ_TENSOR_SIZE");
_Static_assert(KVQ_HOST_INFO_SIZE_1_0 == 40, "KVQ_HOST_INFO_SIZE_1_0");
_Static_assert(KVQ_PROBE_RESULT_SIZE == 32, "KVQ_PROBE_RESULT_SIZE");
_Static_assert(KVQ_KV_MODE_INFO_SIZE == 32, "KVQ_KV_MODE_INFO_SIZE");
_Static_assert(KVQ_BACKEND_INFO_SIZE_1_0 == 48, "KVQ_BACKEND_INFO_SIZE_1_0");
_Static_assert(KVQ_NAME_RULE_SIZE == 24, "KVQ_NAME_RULE_SIZE");
_Static_assert(KVQ_SCHEME_INFO_SIZE_1_0 == 56, "KVQ_SCHEME_INFO_SIZE_1_0");
_Static_assert(KVQ_PLUGIN_INFO_SIZE_1_0 == 88, "KVQ_PLUGIN_INFO_SIZE_1_0");
_Static_assert(KVQ_LAYER_CONFIG_SIZE == 128, "KVQ_LAYER_CONFIG_SIZE");
_Static_assert(KVQ_LAYER_INFO_SIZE == 48, "KVQ_LAYER_INFO_SIZE");
_Static_assert(KVQ_CACHE_GEOMETRY_SIZE == 72, "KVQ_CACHE_GEOMETRY_SIZE");
_Static_assert(KVQ_CACHE_WRITE_ARGS_SIZE_1_0 == 48, "KVQ_CACHE_WRITE_ARGS_SIZE_1_0");
_Static_assert(KVQ_FORWARD_ARGS_SIZE_1_0 == 104, "KVQ_FORWARD_ARGS_SIZE_1_0");
_Static_assert(KVQ_SCHEME_ARGS_SIZE == 40, "KVQ_SCHEME_ARGS_SIZE");
_Static_assert(KVQ_PARAM_INFO_SIZE_1_0 == 104, "KVQ_PARAM_INFO_SIZE_1_0");
_Static_assert(KVQ_PLUGIN_API_SIZE_1_0 == 192, "KVQ_PLUGIN_API_SIZE_1_0");

/* ------------------------------------------------ every field of v1.0 */

/* kvq_tensor */
_Static_assert(sizeof(kvq_tensor) == 160, "sizeof(kvq_tensor)");
_Static_assert(_Alignof(kvq_tensor) == 8, "alignof(kvq_tensor)");
_Static_assert(offsetof(kvq_tensor, struct_size) == 0, "offsetof(kvq_tensor, struct_size)");
_Static_assert(FIELD_SIZE(kvq_tensor, struct_size) == 8, "sizeof(kvq_tensor.struct_size)");
_Static_assert(offsetof(kvq_tensor, data) == 8, "offsetof(kvq_tensor, data)");
_Static_assert(FIELD_SIZE(kvq_tensor, data) == 8, "sizeof(kvq_tensor.data)");
_Static_assert(offsetof(kvq_tensor, device_type) == 16, "offsetof(kvq_tensor, device_type)");
_Static_assert(FIELD_SIZE(kvq_tensor, device_type) == 4, "sizeof(kvq_tensor.device_type)");
_Static_assert(offsetof(kvq_tensor, device_id) == 20, "offsetof(kvq_tensor, device_id)");
_Static_assert(FIELD_SIZE(kvq_tensor, device_id) == 4, "sizeof(kvq_tensor.device_id)");
_Static_assert(offsetof(kvq_tensor, dtype) == 24, "offsetof(kvq_tensor, dtype)");
_Static_assert(FIELD_SIZE(kvq_tensor, dtype) == 4, "sizeof(kvq_tensor.dtype)");
_Static_assert(offsetof(kvq_tensor, ndim) == 28, "offsetof(kvq_tensor, ndim)");
_Static_assert(FIELD_SIZE(kvq_tensor, ndim) == 4, "sizeof(kvq_tensor.ndim)");
_Static_assert(offsetof(kvq_tensor, shape) == 32, "offsetof(kvq_tensor, shape)");
_Static_assert(FIELD_SIZE(kvq_tensor, shape) == 64, "sizeof(kvq_tensor.shape)");
_Static_assert(offsetof(kvq_tensor, strides) == 96, "offsetof(kvq_tensor, strides)");
_Static_assert(FIELD_SIZE(kvq_tensor, strides) == 64, "sizeof(kvq_tensor.strides)");

/* kvq_host_info */
_Static_assert(sizeof(kvq_host_info) == 48, "sizeof(kvq_host_info)"); /* 1.1; 1.0: 40 */
_Static_assert(_Alignof(kvq_host_info) == 8, "alignof(kvq_host_info)");
_Static_assert(offsetof(kvq_host_info, struct_size) == 0, "offsetof(kvq_host_info, struct_size)");
_Static_assert(FIELD_SIZE(kvq_host_info, struct_size) == 8, "sizeof(kvq_host_info.struct_size)");
_Static_assert(offsetof(kvq_host_info, abi_major) == 8, "offsetof(kvq_host_info, abi_major)");
_Static_assert(FIELD_SIZE(kvq_host_info, abi_major) == 4, "sizeof(kvq_host_info.abi_major)");
_Static_assert(offsetof(kvq_host_info, abi_minor) == 12, "offsetof(kvq_host_info, abi_minor)");
_Static_assert(FIELD_SIZE(kvq_host_info, abi_minor) == 4, "sizeof(kvq_host_info.abi_minor)");
_Static_assert(offsetof(kvq_host_info, log) == 16, "offsetof(kvq_host_info, log)");
_Static_assert(FIELD_SIZE(kvq_host_info, log) == 8, "sizeof(kvq_host_info.log)");
_Static_assert(offsetof(kvq_host_info, log_user_data) == 24,
               "offsetof(kvq_host_info, log_user_data)");
_Static_assert(FIELD_SIZE(kvq_host_info, log_user_data) == 8,
               "sizeof(kvq_host_info.log_user_data)");
_Static_assert(offsetof(kvq_host_info, log_level) == 32, "offsetof(kvq_host_info, log_level)");
_Static_assert(FIELD_SIZE(kvq_host_info, log_level) == 4, "sizeof(kvq_host_info.log_level)");
_Static_assert(offsetof(kvq_host_info, num_threads) == 36, "offsetof(kvq_host_info, num_threads)");
_Static_assert(FIELD_SIZE(kvq_host_info, num_threads) == 4, "sizeof(kvq_host_info.num_threads)");

/* kvq_probe_result */
_Static_assert(sizeof(kvq_probe_result) == 32, "sizeof(kvq_probe_result)");
_Static_assert(_Alignof(kvq_probe_result) == 8, "alignof(kvq_probe_result)");
_Static_assert(offsetof(kvq_probe_result, struct_size) == 0,
               "offsetof(kvq_probe_result, struct_size)");
_Static_assert(FIELD_SIZE(kvq_probe_result, struct_size) == 8,
               "sizeof(kvq_probe_result.struct_size)");
_Static_assert(offsetof(kvq_probe_result, can_run) == 8, "offsetof(kvq_probe_result, can_run)");
_Static_assert(FIELD_SIZE(kvq_probe_result, can_run) == 1, "sizeof(kvq_probe_result.can_run)");
_Static_assert(offsetof(kvq_probe_result, reserved) == 9, "offsetof(kvq_probe_result, reserved)");
_Static_assert(FIELD_SIZE(kvq_probe_result, reserved) == 7, "sizeof(kvq_probe_result.reserved)");
_Static_assert(offsetof(kvq_probe_result, reason) == 16, "offsetof(kvq_probe_result, reason)");
_Static_assert(FIELD_SIZE(kvq_probe_result, reason) == 8, "sizeof(kvq_probe_result.reason)");
_Static_assert(offsetof(kvq_probe_result, simd_level) == 24,
               "offsetof(kvq_probe_result, simd_level)");
_Static_assert(FIELD_SIZE(kvq_probe_result, simd_level) == 8,
               "sizeof(kvq_probe_result.simd_level)");

/* kvq_kv_mode_info */
_Static_assert(sizeof(kvq_kv_mode_info) == 32, "sizeof(kvq_kv_mode_info)");
_Static_assert(_Alignof(kvq_kv_mode_info) == 8, "alignof(kvq_kv_mode_info)");
_Static_assert(offsetof(kvq_kv_mode_info, struct_size) == 0,
               "offsetof(kvq_kv_mode_info, struct_size)");
_Static_assert(FIELD_SIZE(kvq_kv_mode_info, struct_size) == 8,
               "sizeof(kvq_kv_mode_info.struct_size)");
_Static_assert(offsetof(kvq_kv_mode_info, name) == 8, "offsetof(kvq_kv_mode_info, name)");
_Static_assert(FIELD_SIZE(kvq_kv_mode_info, name) == 8, "sizeof(kvq_kv_mode_info.name)");
_Static_assert(offsetof(kvq_kv_mode_info, description) == 16,
               "offsetof(kvq_kv_mode_info, description)");
_Static_assert(FIELD_SIZE(kvq_kv_mode_info, description) == 8,
               "sizeof(kvq_kv_mode_info.description)");
_Static_assert(offsetof(kvq_kv_mode_info, element_dtype) == 24,
               "offsetof(kvq_kv_mode_info, element_dtype)");
_Static_assert(FIELD_SIZE(kvq_kv_mode_info, element_dtype) == 4,
               "sizeof(kvq_kv_mode_info.element_dtype)");
_Static_assert(offsetof(kvq_kv_mode_info, supported) == 28,
               "offsetof(kvq_kv_mode_info, supported)");
_Static_assert(FIELD_SIZE(kvq_kv_mode_info, supported) == 1, "sizeof(kvq_kv_mode_info.supported)");
_Static_assert(offsetof(kvq_kv_mode_info, per_token_head) == 29,
               "offsetof(kvq_kv_mode_info, per_token_head)");
_Static_assert(FIELD_SIZE(kvq_kv_mode_info, per_token_head) == 1,
               "sizeof(kvq_kv_mode_info.per_token_head)");
_Static_assert(offsetof(kvq_kv_mode_info, needs_scheme) == 30,
               "offsetof(kvq_kv_mode_info, needs_scheme)");
_Static_assert(FIELD_SIZE(kvq_kv_mode_info, needs_scheme) == 1,
               "sizeof(kvq_kv_mode_info.needs_scheme)");
_Static_assert(offsetof(kvq_kv_mode_info, reserved) == 31, "offsetof(kvq_kv_mode_info, reserved)");
_Static_assert(FIELD_SIZE(kvq_kv_mode_info, reserved) == 1, "sizeof(kvq_kv_mode_info.reserved)");

/* kvq_backend_info */
_Static_assert(sizeof(kvq_backend_info) == 64, "sizeof(kvq_backend_info)"); /* 1.1; 1.0: 48 */
_Static_assert(_Alignof(kvq_backend_info) == 8, "alignof(kvq_backend_info)");
_Static_assert(offsetof(kvq_backend_info, struct_size) == 0,
               "offsetof(kvq_backend_info, struct_size)");
_Static_assert(FIELD_SIZE(kvq_backend_info, struct_size) == 8,
               "sizeof(kvq_backend_info.struct_size)");
_Static_assert(offsetof(kvq_backend_info, name) == 8, "offsetof(kvq_backend_info, name)");
_Static_assert(FIELD_SIZE(kvq_backend_info, name) == 8, "sizeof(kvq_backend_info.name)");
_Static_assert(offsetof(kvq_backend_info, description) == 16,
               "offsetof(kvq_backend_info, description)");
_Static_assert(FIELD_SIZE(kvq_backend_info, description) == 8,
               "sizeof(kvq_backend_info.description)");
_Static_assert(offsetof(kvq_backend_info, num_kv_modes) == 24,
               "offsetof(kvq_backend_info, num_kv_modes)");
_Static_assert(FIELD_SIZE(kvq_backend_info, num_kv_modes) == 8,
               "sizeof(kvq_backend_info.num_kv_modes)");
_Static_assert(offsetof(kvq_backend_info, kv_modes) == 32, "offsetof(kvq_backend_info, kv_modes)");
_Static_assert(FIELD_SIZE(kvq_backend_info, kv_modes) == 8, "sizeof(kvq_backend_info.kv_modes)");
_Static_assert(offsetof(kvq_backend_info, attention_states) == 40,
               "offsetof(kvq_backend_info, attention_states)");
_Static_assert(FIELD_SIZE(kvq_backend_info, attention_states) == 4,
               "sizeof(kvq_backend_info.attention_states)");
_Static_assert(offsetof(kvq_backend_info, reserved) == 44, "offsetof(kvq_backend_info, reserved)");
_Static_assert(FIELD_SIZE(kvq_backend_info, reserved) == 4, "sizeof(kvq_backend_info.reserved)");

/* kvq_name_rule */
_Static_assert(sizeof(kvq_name_rule) == 24, "sizeof(kvq_name_rule)");
_Static_assert(_Alignof(kvq_name_rule) == 8, "alignof(kvq_name_rule)");
_Static_assert(offsetof(kvq_name_rule, struct_size) == 0, "offsetof(kvq_name_rule, struct_size)");
_Static_assert(FIELD_SIZE(kvq_name_rule, struct_size) == 8, "sizeof(kvq_name_rule.struct_size)");
_Static_assert(offsetof(kvq_name_rule, checkpoint_suffix) == 8,
               "offsetof(kvq_name_rule, checkpoint_suffix)");
_Static_assert(FIELD_SIZE(kvq_name_rule, checkpoint_suffix) == 8,
               "sizeof(kvq_name_rule.checkpoint_suffix)");
_Static_assert(offsetof(kvq_name_rule, param_suffix) == 16,
               "offsetof(kvq_name_rule, param_suffix)");
_Static_assert(FIELD_SIZE(kvq_name_rule, param_suffix) == 8, "sizeof(kvq_name_rule.param_suffix)");

/* kvq_scheme_info */
_Static_assert(sizeof(kvq_scheme_info) == 64, "sizeof(kvq_scheme_info)"); /* 1.1; 1.0: 56 */
_Static_assert(_Alignof(kvq_scheme_info) == 8, "alignof(kvq_scheme_info)");
_Static_assert(offsetof(kvq_scheme_info, struct_size) == 0,
               "offsetof(kvq_scheme_info, struct_size)");
_Static_assert(FIELD_SIZE(kvq_scheme_info, struct_size) == 8,
               "sizeof(kvq_scheme_info.struct_size)");
_Static_assert(offsetof(kvq_scheme_info, quant_type) == 8, "offsetof(kvq_scheme_info, quant_type)");
_Static_assert(FIELD_SIZE(kvq_scheme_info, quant_type) == 8, "sizeof(kvq_scheme_info.quant_type)");
_Static_assert(offsetof(kvq_scheme_info, layer_type) == 16,
               "offsetof(kvq_scheme_info, layer_type)");
_Static_assert(FIELD_SIZE(kvq_scheme_info, layer_type) == 8, "sizeof(kvq_scheme_info.layer_type)");
_Static_assert(offsetof(kvq_scheme_info, description) == 24,
               "offsetof(kvq_scheme_info, description)");
_Static_assert(FIELD_SIZE(kvq_scheme_info, description) == 8,
               "sizeof(kvq_scheme_info.description)");
_Static_assert(offsetof(kvq_scheme_info, supported) == 32, "offsetof(kvq_scheme_info, supported)");
_Static_assert(FIELD_SIZE(kvq_scheme_info, supported) == 1, "sizeof(kvq_scheme_info.supported)");
_Static_assert(offsetof(kvq_scheme_info, reserved) == 33, "offsetof(kvq_scheme_info, reserved)");
_Static_assert(FIELD_SIZE(kvq_scheme_info, reserved) == 7, "sizeof(kvq_scheme_info.reserved)");
_Static_assert(offsetof(kvq_scheme_info, num_name_rules) == 40,
               "offsetof(kvq_scheme_info, num_name_rules)");
_Static_assert(FIELD_SIZE(kvq_scheme_info, num_name_rules) == 8,
               "sizeof(kvq_scheme_info.num_name_rules)");
_Static_assert(offsetof(kvq_scheme_info, name_rules) == 48,
               "offsetof(kvq_scheme_info, name_rules)");
_Static_assert(FIELD_SIZE(kvq_scheme_info, name_rules) == 8, "sizeof(kvq_scheme_info.name_rules)");

/* kvq_plugin_info */
_Static_assert(sizeof(kvq_plugin_info) == 120, "sizeof(kvq_plugin_info)"); /* 1.1; 1.0: 88 */
_Static_assert(_Alignof(kvq_plugin_info) == 8, "alignof(kvq_plugin_info)");
_Static_assert(offsetof(kvq_plugin_info, struct_size) == 0,
               "offsetof(kvq_plugin_info, struct_size)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, struct_size) == 8,
               "sizeof(kvq_plugin_info.struct_size)");
_Static_assert(offsetof(kvq_plugin_info, name) == 8, "offsetof(kvq_plugin_info, name)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, name) == 8, "sizeof(kvq_plugin_info.name)");
_Static_assert(offsetof(kvq_plugin_info, version) == 16, "offsetof(kvq_plugin_info, version)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, version) == 8, "sizeof(kvq_plugin_info.version)");
_Static_assert(offsetof(kvq_plugin_info, vendor) == 24, "offsetof(kvq_plugin_info, vendor)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, vendor) == 8, "sizeof(kvq_plugin_info.vendor)");
_Static_assert(offsetof(kvq_plugin_info, abi_major) == 32, "offsetof(kvq_plugin_info, abi_major)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, abi_major) == 4, "sizeof(kvq_plugin_info.abi_major)");
_Static_assert(offsetof(kvq_plugin_info, abi_minor) == 36, "offsetof(kvq_plugin_info, abi_minor)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, abi_minor) == 4, "sizeof(kvq_plugin_info.abi_minor)");
_Static_assert(offsetof(kvq_plugin_info, simd_level) == 40,
               "offsetof(kvq_plugin_info, simd_level)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, simd_level) == 8, "sizeof(kvq_plugin_info.simd_level)");
_Static_assert(offsetof(kvq_plugin_info, cpu_features) == 48,
               "offsetof(kvq_plugin_info, cpu_features)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, cpu_features) == 8,
               "sizeof(kvq_plugin_info.cpu_features)");
_Static_assert(offsetof(kvq_plugin_info, num_backends) == 56,
               "offsetof(kvq_plugin_info, num_backends)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, num_backends) == 8,
               "sizeof(kvq_plugin_info.num_backends)");
_Static_assert(offsetof(kvq_plugin_info, backends) == 64, "offsetof(kvq_plugin_info, backends)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, backends) == 8, "sizeof(kvq_plugin_info.backends)");
_Static_assert(offsetof(kvq_plugin_info, num_schemes) == 72,
               "offsetof(kvq_plugin_info, num_schemes)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, num_schemes) == 8,
               "sizeof(kvq_plugin_info.num_schemes)");
_Static_assert(offsetof(kvq_plugin_info, schemes) == 80, "offsetof(kvq_plugin_info, schemes)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, schemes) == 8, "sizeof(kvq_plugin_info.schemes)");

/* kvq_layer_config */
_Static_assert(sizeof(kvq_layer_config) == 128, "sizeof(kvq_layer_config)");
_Static_assert(_Alignof(kvq_layer_config) == 8, "alignof(kvq_layer_config)");
_Static_assert(offsetof(kvq_layer_config, struct_size) == 0,
               "offsetof(kvq_layer_config, struct_size)");
_Static_assert(FIELD_SIZE(kvq_layer_config, struct_size) == 8,
               "sizeof(kvq_layer_config.struct_size)");
_Static_assert(offsetof(kvq_layer_config, backend) == 8, "offsetof(kvq_layer_config, backend)");
_Static_assert(FIELD_SIZE(kvq_layer_config, backend) == 8, "sizeof(kvq_layer_config.backend)");
_Static_assert(offsetof(kvq_layer_config, layer_name) == 16,
               "offsetof(kvq_layer_config, layer_name)");
_Static_assert(FIELD_SIZE(kvq_layer_config, layer_name) == 8,
               "sizeof(kvq_layer_config.layer_name)");
_Static_assert(offsetof(kvq_layer_config, kv_cache_dtype) == 24,
               "offsetof(kvq_layer_config, kv_cache_dtype)");
_Static_assert(FIELD_SIZE(kvq_layer_config, kv_cache_dtype) == 8,
               "sizeof(kvq_layer_config.kv_cache_dtype)");
_Static_assert(offsetof(kvq_layer_config, model_dtype) == 32,
               "offsetof(kvq_layer_config, model_dtype)");
_Static_assert(FIELD_SIZE(kvq_layer_config, model_dtype) == 4,
               "sizeof(kvq_layer_config.model_dtype)");
_Static_assert(offsetof(kvq_layer_config, layer_index) == 36,
               "offsetof(kvq_layer_config, layer_index)");
_Static_assert(FIELD_SIZE(kvq_layer_config, layer_index) == 4,
               "sizeof(kvq_layer_config.layer_index)");
_Static_assert(offsetof(kvq_layer_config, num_heads) == 40,
               "offsetof(kvq_layer_config, num_heads)");
_Static_assert(FIELD_SIZE(kvq_layer_config, num_heads) == 8, "sizeof(kvq_layer_config.num_heads)");
_Static_assert(offsetof(kvq_layer_config, num_kv_heads) == 48,
               "offsetof(kvq_layer_config, num_kv_heads)");
_Static_assert(FIELD_SIZE(kvq_layer_config, num_kv_heads) == 8,
               "sizeof(kvq_layer_config.num_kv_heads)");
_Static_assert(offsetof(kvq_layer_config, head_size) == 56,
               "offsetof(kvq_layer_config, head_size)");
_Static_assert(FIELD_SIZE(kvq_layer_config, head_size) == 8, "sizeof(kvq_layer_config.head_size)");
_Static_assert(offsetof(kvq_layer_config, head_size_v) == 64,
               "offsetof(kvq_layer_config, head_size_v)");
_Static_assert(FIELD_SIZE(kvq_layer_config, head_size_v) == 8,
               "sizeof(kvq_layer_config.head_size_v)");
_Static_assert(offsetof(kvq_layer_config, block_size) == 72,
               "offsetof(kvq_layer_config, block_size)");
_Static_assert(FIELD_SIZE(kvq_layer_config, block_size) == 8,
               "sizeof(kvq_layer_config.block_size)");
_Static_assert(offsetof(kvq_layer_config, softmax_scale) == 80,
               "offsetof(kvq_layer_config, softmax_scale)");
_Static_assert(FIELD_SIZE(kvq_layer_config, softmax_scale) == 8,
               "sizeof(kvq_layer_config.softmax_scale)");
_Static_assert(offsetof(kvq_layer_config, sliding_window) == 88,
               "offsetof(kvq_layer_config, sliding_window)");
_Static_assert(FIELD_SIZE(kvq_layer_config, sliding_window) == 8,
               "sizeof(kvq_layer_config.sliding_window)");
_Static_assert(offsetof(kvq_layer_config, softcap) == 96, "offsetof(kvq_layer_config, softcap)");
_Static_assert(FIELD_SIZE(kvq_layer_config, softcap) == 8, "sizeof(kvq_layer_config.softcap)");
_Static_assert(offsetof(kvq_layer_config, tp_rank) == 104, "offsetof(kvq_layer_config, tp_rank)");
_Static_assert(FIELD_SIZE(kvq_layer_config, tp_rank) == 4, "sizeof(kvq_layer_config.tp_rank)");
_Static_assert(offsetof(kvq_layer_config, tp_size) == 108, "offsetof(kvq_layer_config, tp_size)");
_Static_assert(FIELD_SIZE(kvq_layer_config, tp_size) == 4, "sizeof(kvq_layer_config.tp_size)");
_Static_assert(offsetof(kvq_layer_config, num_options) == 112,
               "offsetof(kvq_layer_config, num_options)");
_Static_assert(FIELD_SIZE(kvq_layer_config, num_options) == 8,
               "sizeof(kvq_layer_config.num_options)");
_Static_assert(offsetof(kvq_layer_config, options) == 120, "offsetof(kvq_layer_config, options)");
_Static_assert(FIELD_SIZE(kvq_layer_config, options) == 8, "sizeof(kvq_layer_config.options)");

/* kvq_layer_info */
_Static_assert(sizeof(kvq_layer_info) == 48, "sizeof(kvq_layer_info)");
_Static_assert(_Alignof(kvq_layer_info) == 8, "alignof(kvq_layer_info)");
_Static_assert(offsetof(kvq_layer_info, struct_size) == 0, "offsetof(kvq_layer_info, struct_size)");
_Static_assert(FIELD_SIZE(kvq_layer_info, struct_size) == 8, "sizeof(kvq_layer_info.struct_size)");
_Static_assert(offsetof(kvq_layer_info, impl_name) == 8, "offsetof(kvq_layer_info, impl_name)");
_Static_assert(FIELD_SIZE(kvq_layer_info, impl_name) == 8, "sizeof(kvq_layer_info.impl_name)");
_Static_assert(offsetof(kvq_layer_info, kv_cache_dtype) == 16,
               "offsetof(kvq_layer_info, kv_cache_dtype)");
_Static_assert(FIELD_SIZE(kvq_layer_info, kv_cache_dtype) == 8,
               "sizeof(kvq_layer_info.kv_cache_dtype)");
_Static_assert(offsetof(kvq_layer_info, scheme) == 24, "offsetof(kvq_layer_info, scheme)");
_Static_assert(FIELD_SIZE(kvq_layer_info, scheme) == 8, "sizeof(kvq_layer_info.scheme)");
_Static_assert(offsetof(kvq_layer_info, element_dtype) == 32,
               "offsetof(kvq_layer_info, element_dtype)");
_Static_assert(FIELD_SIZE(kvq_layer_info, element_dtype) == 4,
               "sizeof(kvq_layer_info.element_dtype)");
_Static_assert(offsetof(kvq_layer_info, reserved) == 36, "offsetof(kvq_layer_info, reserved)");
_Static_assert(FIELD_SIZE(kvq_layer_info, reserved) == 4, "sizeof(kvq_layer_info.reserved)");
_Static_assert(offsetof(kvq_layer_info, num_params) == 40, "offsetof(kvq_layer_info, num_params)");
_Static_assert(FIELD_SIZE(kvq_layer_info, num_params) == 8, "sizeof(kvq_layer_info.num_params)");

/* kvq_cache_geometry */
_Static_assert(sizeof(kvq_cache_geometry) == 72, "sizeof(kvq_cache_geometry)");
_Static_assert(_Alignof(kvq_cache_geometry) == 8, "alignof(kvq_cache_geometry)");
_Static_assert(offsetof(kvq_cache_geometry, struct_size) == 0,
               "offsetof(kvq_cache_geometry, struct_size)");
_Static_assert(FIELD_SIZE(kvq_cache_geometry, struct_size) == 8,
               "sizeof(kvq_cache_geometry.struct_size)");
_Static_assert(offsetof(kvq_cache_geometry, layout) == 8, "offsetof(kvq_cache_geometry, layout)");
_Static_assert(FIELD_SIZE(kvq_cache_geometry, layout) == 4, "sizeof(kvq_cache_geometry.layout)");
_Static_assert(offsetof(kvq_cache_geometry, element_dtype) == 12,
               "offsetof(kvq_cache_geometry, element_dtype)");
_Static_assert(FIELD_SIZE(kvq_cache_geometry, element_dtype) == 4,
               "sizeof(kvq_cache_geometry.element_dtype)");
_Static_assert(offsetof(kvq_cache_geometry, block_size) == 16,
               "offsetof(kvq_cache_geometry, block_size)");
_Static_assert(FIELD_SIZE(kvq_cache_geometry, block_size) == 8,
               "sizeof(kvq_cache_geometry.block_size)");
_Static_assert(offsetof(kvq_cache_geometry, num_kv_heads) == 24,
               "offsetof(kvq_cache_geometry, num_kv_heads)");
_Static_assert(FIELD_SIZE(kvq_cache_geometry, num_kv_heads) == 8,
               "sizeof(kvq_cache_geometry.num_kv_heads)");
_Static_assert(offsetof(kvq_cache_geometry, head_size) == 32,
               "offsetof(kvq_cache_geometry, head_size)");
_Static_assert(FIELD_SIZE(kvq_cache_geometry, head_size) == 8,
               "sizeof(kvq_cache_geometry.head_size)");
_Static_assert(offsetof(kvq_cache_geometry, head_size_v) == 40,
               "offsetof(kvq_cache_geometry, head_size_v)");
_Static_assert(FIELD_SIZE(kvq_cache_geometry, head_size_v) == 8,
               "sizeof(kvq_cache_geometry.head_size_v)");
_Static_assert(offsetof(kvq_cache_geometry, row_bytes) == 48,
               "offsetof(kvq_cache_geometry, row_bytes)");
_Static_assert(FIELD_SIZE(kvq_cache_geometry, row_bytes) == 8,
               "sizeof(kvq_cache_geometry.row_bytes)");
_Static_assert(offsetof(kvq_cache_geometry, bytes_per_block) == 56,
               "offsetof(kvq_cache_geometry, bytes_per_block)");
_Static_assert(FIELD_SIZE(kvq_cache_geometry, bytes_per_block) == 8,
               "sizeof(kvq_cache_geometry.bytes_per_block)");
_Static_assert(offsetof(kvq_cache_geometry, alignment) == 64,
               "offsetof(kvq_cache_geometry, alignment)");
_Static_assert(FIELD_SIZE(kvq_cache_geometry, alignment) == 8,
               "sizeof(kvq_cache_geometry.alignment)");

/* kvq_cache_write_args */
_Static_assert(sizeof(kvq_cache_write_args) == 56, "sizeof(kvq_cache_write_args)"); /* 1.1; 1.0: 48 */
_Static_assert(_Alignof(kvq_cache_write_args) == 8, "alignof(kvq_cache_write_args)");
_Static_assert(offsetof(kvq_cache_write_args, struct_size) == 0,
               "offsetof(kvq_cache_write_args, struct_size)");
_Static_assert(FIELD_SIZE(kvq_cache_write_args, struct_size) == 8,
               "sizeof(kvq_cache_write_args.struct_size)");
_Static_assert(offsetof(kvq_cache_write_args, key) == 8, "offsetof(kvq_cache_write_args, key)");
_Static_assert(FIELD_SIZE(kvq_cache_write_args, key) == 8, "sizeof(kvq_cache_write_args.key)");
_Static_assert(offsetof(kvq_cache_write_args, value) == 16,
               "offsetof(kvq_cache_write_args, value)");
_Static_assert(FIELD_SIZE(kvq_cache_write_args, value) == 8, "sizeof(kvq_cache_write_args.value)");
_Static_assert(offsetof(kvq_cache_write_args, slot_mapping) == 24,
               "offsetof(kvq_cache_write_args, slot_mapping)");
_Static_assert(FIELD_SIZE(kvq_cache_write_args, slot_mapping) == 8,
               "sizeof(kvq_cache_write_args.slot_mapping)");
_Static_assert(offsetof(kvq_cache_write_args, kv_cache) == 32,
               "offsetof(kvq_cache_write_args, kv_cache)");
_Static_assert(FIELD_SIZE(kvq_cache_write_args, kv_cache) == 8,
               "sizeof(kvq_cache_write_args.kv_cache)");
_Static_assert(offsetof(kvq_cache_write_args, num_tokens) == 40,
               "offsetof(kvq_cache_write_args, num_tokens)");
_Static_assert(FIELD_SIZE(kvq_cache_write_args, num_tokens) == 8,
               "sizeof(kvq_cache_write_args.num_tokens)");

/* kvq_forward_args */
_Static_assert(sizeof(kvq_forward_args) == 112, "sizeof(kvq_forward_args)"); /* 1.1; 1.0: 104 */
_Static_assert(_Alignof(kvq_forward_args) == 8, "alignof(kvq_forward_args)");
_Static_assert(offsetof(kvq_forward_args, struct_size) == 0,
               "offsetof(kvq_forward_args, struct_size)");
_Static_assert(FIELD_SIZE(kvq_forward_args, struct_size) == 8,
               "sizeof(kvq_forward_args.struct_size)");
_Static_assert(offsetof(kvq_forward_args, attention_state) == 8,
               "offsetof(kvq_forward_args, attention_state)");
_Static_assert(FIELD_SIZE(kvq_forward_args, attention_state) == 4,
               "sizeof(kvq_forward_args.attention_state)");
_Static_assert(offsetof(kvq_forward_args, reserved) == 12, "offsetof(kvq_forward_args, reserved)");
_Static_assert(FIELD_SIZE(kvq_forward_args, reserved) == 4, "sizeof(kvq_forward_args.reserved)");
_Static_assert(offsetof(kvq_forward_args, query) == 16, "offsetof(kvq_forward_args, query)");
_Static_assert(FIELD_SIZE(kvq_forward_args, query) == 8, "sizeof(kvq_forward_args.query)");
_Static_assert(offsetof(kvq_forward_args, key) == 24, "offsetof(kvq_forward_args, key)");
_Static_assert(FIELD_SIZE(kvq_forward_args, key) == 8, "sizeof(kvq_forward_args.key)");
_Static_assert(offsetof(kvq_forward_args, value) == 32, "offsetof(kvq_forward_args, value)");
_Static_assert(FIELD_SIZE(kvq_forward_args, value) == 8, "sizeof(kvq_forward_args.value)");
_Static_assert(offsetof(kvq_forward_args, kv_cache) == 40, "offsetof(kvq_forward_args, kv_cache)");
_Static_assert(FIELD_SIZE(kvq_forward_args, kv_cache) == 8, "sizeof(kvq_forward_args.kv_cache)");
_Static_assert(offsetof(kvq_forward_args, query_start_loc) == 48,
               "offsetof(kvq_forward_args, query_start_loc)");
_Static_assert(FIELD_SIZE(kvq_forward_args, query_start_loc) == 8,
               "sizeof(kvq_forward_args.query_start_loc)");
_Static_assert(offsetof(kvq_forward_args, seq_lens) == 56, "offsetof(kvq_forward_args, seq_lens)");
_Static_assert(FIELD_SIZE(kvq_forward_args, seq_lens) == 8, "sizeof(kvq_forward_args.seq_lens)");
_Static_assert(offsetof(kvq_forward_args, block_table) == 64,
               "offsetof(kvq_forward_args, block_table)");
_Static_assert(FIELD_SIZE(kvq_forward_args, block_table) == 8,
               "sizeof(kvq_forward_args.block_table)");
_Static_assert(offsetof(kvq_forward_args, alibi_slopes) == 72,
               "offsetof(kvq_forward_args, alibi_slopes)");
_Static_assert(FIELD_SIZE(kvq_forward_args, alibi_slopes) == 8,
               "sizeof(kvq_forward_args.alibi_slopes)");
_Static_assert(offsetof(kvq_forward_args, sinks) == 80, "offsetof(kvq_forward_args, sinks)");
_Static_assert(FIELD_SIZE(kvq_forward_args, sinks) == 8, "sizeof(kvq_forward_args.sinks)");
_Static_assert(offsetof(kvq_forward_args, output) == 88, "offsetof(kvq_forward_args, output)");
_Static_assert(FIELD_SIZE(kvq_forward_args, output) == 8, "sizeof(kvq_forward_args.output)");
_Static_assert(offsetof(kvq_forward_args, head_weights) == 96,
               "offsetof(kvq_forward_args, head_weights)");
_Static_assert(FIELD_SIZE(kvq_forward_args, head_weights) == 8,
               "sizeof(kvq_forward_args.head_weights)");

/* kvq_scheme_args */
_Static_assert(sizeof(kvq_scheme_args) == 40, "sizeof(kvq_scheme_args)");
_Static_assert(_Alignof(kvq_scheme_args) == 8, "alignof(kvq_scheme_args)");
_Static_assert(offsetof(kvq_scheme_args, struct_size) == 0,
               "offsetof(kvq_scheme_args, struct_size)");
_Static_assert(FIELD_SIZE(kvq_scheme_args, struct_size) == 8,
               "sizeof(kvq_scheme_args.struct_size)");
_Static_assert(offsetof(kvq_scheme_args, quant_type) == 8, "offsetof(kvq_scheme_args, quant_type)");
_Static_assert(FIELD_SIZE(kvq_scheme_args, quant_type) == 8, "sizeof(kvq_scheme_args.quant_type)");
_Static_assert(offsetof(kvq_scheme_args, layer_type) == 16,
               "offsetof(kvq_scheme_args, layer_type)");
_Static_assert(FIELD_SIZE(kvq_scheme_args, layer_type) == 8, "sizeof(kvq_scheme_args.layer_type)");
_Static_assert(offsetof(kvq_scheme_args, num_options) == 24,
               "offsetof(kvq_scheme_args, num_options)");
_Static_assert(FIELD_SIZE(kvq_scheme_args, num_options) == 8,
               "sizeof(kvq_scheme_args.num_options)");
_Static_assert(offsetof(kvq_scheme_args, options) == 32, "offsetof(kvq_scheme_args, options)");
_Static_assert(FIELD_SIZE(kvq_scheme_args, options) == 8, "sizeof(kvq_scheme_args.options)");

/* kvq_param_info */
_Static_assert(sizeof(kvq_param_info) == 120, "sizeof(kvq_param_info)"); /* 1.1; 1.0: 104 */
_Static_assert(_Alignof(kvq_param_info) == 8, "alignof(kvq_param_info)");
_Static_assert(offsetof(kvq_param_info, struct_size) == 0, "offsetof(kvq_param_info, struct_size)");
_Static_assert(FIELD_SIZE(kvq_param_info, struct_size) == 8, "sizeof(kvq_param_info.struct_size)");
_Static_assert(offsetof(kvq_param_info, name) == 8, "offsetof(kvq_param_info, name)");
_Static_assert(FIELD_SIZE(kvq_param_info, name) == 8, "sizeof(kvq_param_info.name)");
_Static_assert(offsetof(kvq_param_info, loader) == 16, "offsetof(kvq_param_info, loader)");
_Static_assert(FIELD_SIZE(kvq_param_info, loader) == 8, "sizeof(kvq_param_info.loader)");
_Static_assert(offsetof(kvq_param_info, dtype) == 24, "offsetof(kvq_param_info, dtype)");
_Static_assert(FIELD_SIZE(kvq_param_info, dtype) == 4, "sizeof(kvq_param_info.dtype)");
_Static_assert(offsetof(kvq_param_info, ndim) == 28, "offsetof(kvq_param_info, ndim)");
_Static_assert(FIELD_SIZE(kvq_param_info, ndim) == 4, "sizeof(kvq_param_info.ndim)");
_Static_assert(offsetof(kvq_param_info, shape) == 32, "offsetof(kvq_param_info, shape)");
_Static_assert(FIELD_SIZE(kvq_param_info, shape) == 64, "sizeof(kvq_param_info.shape)");
_Static_assert(offsetof(kvq_param_info, trainable) == 96, "offsetof(kvq_param_info, trainable)");
_Static_assert(FIELD_SIZE(kvq_param_info, trainable) == 1, "sizeof(kvq_param_info.trainable)");
_Static_assert(offsetof(kvq_param_info, derived) == 97, "offsetof(kvq_param_info, derived)");
_Static_assert(FIELD_SIZE(kvq_param_info, derived) == 1, "sizeof(kvq_param_info.derived)");
_Static_assert(offsetof(kvq_param_info, loaded) == 98, "offsetof(kvq_param_info, loaded)");
_Static_assert(FIELD_SIZE(kvq_param_info, loaded) == 1, "sizeof(kvq_param_info.loaded)");
_Static_assert(offsetof(kvq_param_info, reserved) == 99, "offsetof(kvq_param_info, reserved)");
_Static_assert(FIELD_SIZE(kvq_param_info, reserved) == 5, "sizeof(kvq_param_info.reserved)");

/* kvq_plugin_api */
_Static_assert(sizeof(kvq_plugin_api) == 280, "sizeof(kvq_plugin_api)"); /* 1.1; 1.0: 192 */
_Static_assert(_Alignof(kvq_plugin_api) == 8, "alignof(kvq_plugin_api)");
_Static_assert(offsetof(kvq_plugin_api, struct_size) == 0, "offsetof(kvq_plugin_api, struct_size)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, struct_size) == 8, "sizeof(kvq_plugin_api.struct_size)");
_Static_assert(offsetof(kvq_plugin_api, abi_major) == 8, "offsetof(kvq_plugin_api, abi_major)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, abi_major) == 4, "sizeof(kvq_plugin_api.abi_major)");
_Static_assert(offsetof(kvq_plugin_api, abi_minor) == 12, "offsetof(kvq_plugin_api, abi_minor)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, abi_minor) == 4, "sizeof(kvq_plugin_api.abi_minor)");
_Static_assert(offsetof(kvq_plugin_api, negotiate) == 16, "offsetof(kvq_plugin_api, negotiate)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, negotiate) == 8, "sizeof(kvq_plugin_api.negotiate)");
_Static_assert(offsetof(kvq_plugin_api, error_code) == 24, "offsetof(kvq_plugin_api, error_code)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, error_code) == 8, "sizeof(kvq_plugin_api.error_code)");
_Static_assert(offsetof(kvq_plugin_api, error_message) == 32,
               "offsetof(kvq_plugin_api, error_message)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, error_message) == 8,
               "sizeof(kvq_plugin_api.error_message)");
_Static_assert(offsetof(kvq_plugin_api, error_destroy) == 40,
               "offsetof(kvq_plugin_api, error_destroy)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, error_destroy) == 8,
               "sizeof(kvq_plugin_api.error_destroy)");
_Static_assert(offsetof(kvq_plugin_api, instance_destroy) == 48,
               "offsetof(kvq_plugin_api, instance_destroy)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, instance_destroy) == 8,
               "sizeof(kvq_plugin_api.instance_destroy)");
_Static_assert(offsetof(kvq_plugin_api, probe) == 56, "offsetof(kvq_plugin_api, probe)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, probe) == 8, "sizeof(kvq_plugin_api.probe)");
_Static_assert(offsetof(kvq_plugin_api, get_info) == 64, "offsetof(kvq_plugin_api, get_info)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, get_info) == 8, "sizeof(kvq_plugin_api.get_info)");
_Static_assert(offsetof(kvq_plugin_api, layer_create) == 72,
               "offsetof(kvq_plugin_api, layer_create)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, layer_create) == 8,
               "sizeof(kvq_plugin_api.layer_create)");
_Static_assert(offsetof(kvq_plugin_api, layer_destroy) == 80,
               "offsetof(kvq_plugin_api, layer_destroy)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, layer_destroy) == 8,
               "sizeof(kvq_plugin_api.layer_destroy)");
_Static_assert(offsetof(kvq_plugin_api, layer_info) == 88, "offsetof(kvq_plugin_api, layer_info)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, layer_info) == 8, "sizeof(kvq_plugin_api.layer_info)");
_Static_assert(offsetof(kvq_plugin_api, cache_geometry) == 96,
               "offsetof(kvq_plugin_api, cache_geometry)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, cache_geometry) == 8,
               "sizeof(kvq_plugin_api.cache_geometry)");
_Static_assert(offsetof(kvq_plugin_api, cache_init) == 104, "offsetof(kvq_plugin_api, cache_init)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, cache_init) == 8, "sizeof(kvq_plugin_api.cache_init)");
_Static_assert(offsetof(kvq_plugin_api, cache_write) == 112,
               "offsetof(kvq_plugin_api, cache_write)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, cache_write) == 8, "sizeof(kvq_plugin_api.cache_write)");
_Static_assert(offsetof(kvq_plugin_api, supports) == 120, "offsetof(kvq_plugin_api, supports)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, supports) == 8, "sizeof(kvq_plugin_api.supports)");
_Static_assert(offsetof(kvq_plugin_api, forward) == 128, "offsetof(kvq_plugin_api, forward)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, forward) == 8, "sizeof(kvq_plugin_api.forward)");
_Static_assert(offsetof(kvq_plugin_api, apply_scheme) == 136,
               "offsetof(kvq_plugin_api, apply_scheme)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, apply_scheme) == 8,
               "sizeof(kvq_plugin_api.apply_scheme)");
_Static_assert(offsetof(kvq_plugin_api, scheme_apply) == 144,
               "offsetof(kvq_plugin_api, scheme_apply)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, scheme_apply) == 8,
               "sizeof(kvq_plugin_api.scheme_apply)");
_Static_assert(offsetof(kvq_plugin_api, param_info) == 152, "offsetof(kvq_plugin_api, param_info)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, param_info) == 8, "sizeof(kvq_plugin_api.param_info)");
_Static_assert(offsetof(kvq_plugin_api, param_read) == 160, "offsetof(kvq_plugin_api, param_read)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, param_read) == 8, "sizeof(kvq_plugin_api.param_read)");
_Static_assert(offsetof(kvq_plugin_api, param_load) == 168, "offsetof(kvq_plugin_api, param_load)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, param_load) == 8, "sizeof(kvq_plugin_api.param_load)");
_Static_assert(offsetof(kvq_plugin_api, process_weights) == 176,
               "offsetof(kvq_plugin_api, process_weights)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, process_weights) == 8,
               "sizeof(kvq_plugin_api.process_weights)");
_Static_assert(offsetof(kvq_plugin_api, select_scheme) == 184,
               "offsetof(kvq_plugin_api, select_scheme)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, select_scheme) == 8,
               "sizeof(kvq_plugin_api.select_scheme)");

/* ------------------------------------------------------------- 1.1 */
/* Appended in 1.1: every v1.0 offset above is unchanged; the structs that
 * grew keep their v1.0 size as *_SIZE_1_0. */
_Static_assert(KVQ_ABI_MINOR == 1, "KVQ_ABI_MINOR");
_Static_assert(KVQ_DEVICE_CUDA == 2, "KVQ_DEVICE_CUDA");
_Static_assert(KVQ_DEVICE_OPAQUE == 3, "KVQ_DEVICE_OPAQUE");
_Static_assert(KVQ_PARAM_ROLE_OTHER == 1, "KVQ_PARAM_ROLE_OTHER");
_Static_assert(KVQ_PARAM_ROLE_K_SCALE == 2, "KVQ_PARAM_ROLE_K_SCALE");
_Static_assert(KVQ_PARAM_ROLE_V_SCALE == 3, "KVQ_PARAM_ROLE_V_SCALE");
_Static_assert(KVQ_PARAM_ROLE_Q_SCALE == 4, "KVQ_PARAM_ROLE_Q_SCALE");
_Static_assert(KVQ_PARAM_ROLE_KV_SCALE == 5, "KVQ_PARAM_ROLE_KV_SCALE");
_Static_assert(KVQ_PARAM_ROLE_K_CHANNEL_SCALE == 6, "KVQ_PARAM_ROLE_K_CHANNEL_SCALE");
_Static_assert(KVQ_PARAM_ROLE_K_CHANNEL_OFFSET == 7, "KVQ_PARAM_ROLE_K_CHANNEL_OFFSET");
_Static_assert(KVQ_PARAM_ROLE_V_CHANNEL_SCALE == 8, "KVQ_PARAM_ROLE_V_CHANNEL_SCALE");
_Static_assert(KVQ_PARAM_ROLE_V_CHANNEL_OFFSET == 9, "KVQ_PARAM_ROLE_V_CHANNEL_OFFSET");
_Static_assert(KVQ_PARAM_ROLE_DERIVED == 10, "KVQ_PARAM_ROLE_DERIVED");
_Static_assert(KVQ_HOST_INFO_SIZE == 48, "KVQ_HOST_INFO_SIZE");
_Static_assert(KVQ_OPTION_INFO_SIZE == 40, "KVQ_OPTION_INFO_SIZE");
_Static_assert(KVQ_BACKEND_INFO_SIZE == 64, "KVQ_BACKEND_INFO_SIZE");
_Static_assert(KVQ_SCHEME_INFO_SIZE == 64, "KVQ_SCHEME_INFO_SIZE");
_Static_assert(KVQ_PLUGIN_INFO_SIZE == 120, "KVQ_PLUGIN_INFO_SIZE");
_Static_assert(KVQ_CACHE_WRITE_ARGS_SIZE == 56, "KVQ_CACHE_WRITE_ARGS_SIZE");
_Static_assert(KVQ_FORWARD_ARGS_SIZE == 112, "KVQ_FORWARD_ARGS_SIZE");
_Static_assert(KVQ_PARAM_INFO_SIZE == 120, "KVQ_PARAM_INFO_SIZE");
_Static_assert(KVQ_MEMCPY_ARGS_SIZE == 56, "KVQ_MEMCPY_ARGS_SIZE");
_Static_assert(KVQ_MEMSET_ARGS_SIZE == 40, "KVQ_MEMSET_ARGS_SIZE");
_Static_assert(KVQ_PARAM_LOAD_ARGS_SIZE == 32, "KVQ_PARAM_LOAD_ARGS_SIZE");
_Static_assert(KVQ_PARAM_READ_ARGS_SIZE == 24, "KVQ_PARAM_READ_ARGS_SIZE");
_Static_assert(KVQ_PARAM_QUERY_SIZE == 24, "KVQ_PARAM_QUERY_SIZE");
_Static_assert(KVQ_SELECT_SCHEME_ARGS_SIZE == 40, "KVQ_SELECT_SCHEME_ARGS_SIZE");
_Static_assert(KVQ_SCHEME_CHOICE_SIZE == 16, "KVQ_SCHEME_CHOICE_SIZE");
_Static_assert(KVQ_PLUGIN_API_SIZE == 280, "KVQ_PLUGIN_API_SIZE");

/* kvq_host_info (1.1 tail) */
_Static_assert(offsetof(kvq_host_info, device_ordinal) == 40, "offsetof(kvq_host_info, device_ordinal)");
_Static_assert(FIELD_SIZE(kvq_host_info, device_ordinal) == 4, "sizeof(kvq_host_info.device_ordinal)");
_Static_assert(offsetof(kvq_host_info, reserved_1_1) == 44, "offsetof(kvq_host_info, reserved_1_1)");
_Static_assert(FIELD_SIZE(kvq_host_info, reserved_1_1) == 4, "sizeof(kvq_host_info.reserved_1_1)");

/* kvq_option_info (1.1) */
_Static_assert(sizeof(kvq_option_info) == 40, "sizeof(kvq_option_info)");
_Static_assert(_Alignof(kvq_option_info) == 8, "alignof(kvq_option_info)");
_Static_assert(offsetof(kvq_option_info, struct_size) == 0, "offsetof(kvq_option_info, struct_size)");
_Static_assert(FIELD_SIZE(kvq_option_info, struct_size) == 8, "sizeof(kvq_option_info.struct_size)");
_Static_assert(offsetof(kvq_option_info, name) == 8, "offsetof(kvq_option_info, name)");
_Static_assert(FIELD_SIZE(kvq_option_info, name) == 8, "sizeof(kvq_option_info.name)");
_Static_assert(offsetof(kvq_option_info, description) == 16, "offsetof(kvq_option_info, description)");
_Static_assert(FIELD_SIZE(kvq_option_info, description) == 8, "sizeof(kvq_option_info.description)");
_Static_assert(offsetof(kvq_option_info, default_value) == 24, "offsetof(kvq_option_info, default_value)");
_Static_assert(FIELD_SIZE(kvq_option_info, default_value) == 8, "sizeof(kvq_option_info.default_value)");
_Static_assert(offsetof(kvq_option_info, kv_modes) == 32, "offsetof(kvq_option_info, kv_modes)");
_Static_assert(FIELD_SIZE(kvq_option_info, kv_modes) == 8, "sizeof(kvq_option_info.kv_modes)");

/* kvq_backend_info (1.1 tail) */
_Static_assert(offsetof(kvq_backend_info, num_layer_options) == 48, "offsetof(kvq_backend_info, num_layer_options)");
_Static_assert(FIELD_SIZE(kvq_backend_info, num_layer_options) == 8, "sizeof(kvq_backend_info.num_layer_options)");
_Static_assert(offsetof(kvq_backend_info, layer_options) == 56, "offsetof(kvq_backend_info, layer_options)");
_Static_assert(FIELD_SIZE(kvq_backend_info, layer_options) == 8, "sizeof(kvq_backend_info.layer_options)");

/* kvq_scheme_info (1.1 tail) */
_Static_assert(offsetof(kvq_scheme_info, backend) == 56, "offsetof(kvq_scheme_info, backend)");
_Static_assert(FIELD_SIZE(kvq_scheme_info, backend) == 8, "sizeof(kvq_scheme_info.backend)");

/* kvq_plugin_info (1.1 tail) */
_Static_assert(offsetof(kvq_plugin_info, device_type) == 88, "offsetof(kvq_plugin_info, device_type)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, device_type) == 4, "sizeof(kvq_plugin_info.device_type)");
_Static_assert(offsetof(kvq_plugin_info, device_ordinal) == 92, "offsetof(kvq_plugin_info, device_ordinal)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, device_ordinal) == 4, "sizeof(kvq_plugin_info.device_ordinal)");
_Static_assert(offsetof(kvq_plugin_info, device_name) == 96, "offsetof(kvq_plugin_info, device_name)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, device_name) == 8, "sizeof(kvq_plugin_info.device_name)");
_Static_assert(offsetof(kvq_plugin_info, device_memory_bytes) == 104, "offsetof(kvq_plugin_info, device_memory_bytes)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, device_memory_bytes) == 8, "sizeof(kvq_plugin_info.device_memory_bytes)");
_Static_assert(offsetof(kvq_plugin_info, device_count) == 112, "offsetof(kvq_plugin_info, device_count)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, device_count) == 4, "sizeof(kvq_plugin_info.device_count)");
_Static_assert(offsetof(kvq_plugin_info, has_device_memory) == 116, "offsetof(kvq_plugin_info, has_device_memory)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, has_device_memory) == 1, "sizeof(kvq_plugin_info.has_device_memory)");
_Static_assert(offsetof(kvq_plugin_info, reserved_1_1) == 117, "offsetof(kvq_plugin_info, reserved_1_1)");
_Static_assert(FIELD_SIZE(kvq_plugin_info, reserved_1_1) == 3, "sizeof(kvq_plugin_info.reserved_1_1)");

/* kvq_cache_write_args (1.1 tail) */
_Static_assert(offsetof(kvq_cache_write_args, stream) == 48, "offsetof(kvq_cache_write_args, stream)");
_Static_assert(FIELD_SIZE(kvq_cache_write_args, stream) == 8, "sizeof(kvq_cache_write_args.stream)");

/* kvq_forward_args (1.1 tail) */
_Static_assert(offsetof(kvq_forward_args, stream) == 104, "offsetof(kvq_forward_args, stream)");
_Static_assert(FIELD_SIZE(kvq_forward_args, stream) == 8, "sizeof(kvq_forward_args.stream)");

/* kvq_param_info (1.1 tail) */
_Static_assert(offsetof(kvq_param_info, role) == 104, "offsetof(kvq_param_info, role)");
_Static_assert(FIELD_SIZE(kvq_param_info, role) == 4, "sizeof(kvq_param_info.role)");
_Static_assert(offsetof(kvq_param_info, reserved_1_1) == 108, "offsetof(kvq_param_info, reserved_1_1)");
_Static_assert(FIELD_SIZE(kvq_param_info, reserved_1_1) == 4, "sizeof(kvq_param_info.reserved_1_1)");
_Static_assert(offsetof(kvq_param_info, load_shapes) == 112, "offsetof(kvq_param_info, load_shapes)");
_Static_assert(FIELD_SIZE(kvq_param_info, load_shapes) == 8, "sizeof(kvq_param_info.load_shapes)");

/* kvq_memcpy_args (1.1) */
_Static_assert(sizeof(kvq_memcpy_args) == 56, "sizeof(kvq_memcpy_args)");
_Static_assert(_Alignof(kvq_memcpy_args) == 8, "alignof(kvq_memcpy_args)");
_Static_assert(offsetof(kvq_memcpy_args, struct_size) == 0, "offsetof(kvq_memcpy_args, struct_size)");
_Static_assert(FIELD_SIZE(kvq_memcpy_args, struct_size) == 8, "sizeof(kvq_memcpy_args.struct_size)");
_Static_assert(offsetof(kvq_memcpy_args, dst) == 8, "offsetof(kvq_memcpy_args, dst)");
_Static_assert(FIELD_SIZE(kvq_memcpy_args, dst) == 8, "sizeof(kvq_memcpy_args.dst)");
_Static_assert(offsetof(kvq_memcpy_args, dst_device_type) == 16, "offsetof(kvq_memcpy_args, dst_device_type)");
_Static_assert(FIELD_SIZE(kvq_memcpy_args, dst_device_type) == 4, "sizeof(kvq_memcpy_args.dst_device_type)");
_Static_assert(offsetof(kvq_memcpy_args, reserved0) == 20, "offsetof(kvq_memcpy_args, reserved0)");
_Static_assert(FIELD_SIZE(kvq_memcpy_args, reserved0) == 4, "sizeof(kvq_memcpy_args.reserved0)");
_Static_assert(offsetof(kvq_memcpy_args, src) == 24, "offsetof(kvq_memcpy_args, src)");
_Static_assert(FIELD_SIZE(kvq_memcpy_args, src) == 8, "sizeof(kvq_memcpy_args.src)");
_Static_assert(offsetof(kvq_memcpy_args, src_device_type) == 32, "offsetof(kvq_memcpy_args, src_device_type)");
_Static_assert(FIELD_SIZE(kvq_memcpy_args, src_device_type) == 4, "sizeof(kvq_memcpy_args.src_device_type)");
_Static_assert(offsetof(kvq_memcpy_args, reserved1) == 36, "offsetof(kvq_memcpy_args, reserved1)");
_Static_assert(FIELD_SIZE(kvq_memcpy_args, reserved1) == 4, "sizeof(kvq_memcpy_args.reserved1)");
_Static_assert(offsetof(kvq_memcpy_args, bytes) == 40, "offsetof(kvq_memcpy_args, bytes)");
_Static_assert(FIELD_SIZE(kvq_memcpy_args, bytes) == 8, "sizeof(kvq_memcpy_args.bytes)");
_Static_assert(offsetof(kvq_memcpy_args, stream) == 48, "offsetof(kvq_memcpy_args, stream)");
_Static_assert(FIELD_SIZE(kvq_memcpy_args, stream) == 8, "sizeof(kvq_memcpy_args.stream)");

/* kvq_memset_args (1.1) */
_Static_assert(sizeof(kvq_memset_args) == 40, "sizeof(kvq_memset_args)");
_Static_assert(_Alignof(kvq_memset_args) == 8, "alignof(kvq_memset_args)");
_Static_assert(offsetof(kvq_memset_args, struct_size) == 0, "offsetof(kvq_memset_args, struct_size)");
_Static_assert(FIELD_SIZE(kvq_memset_args, struct_size) == 8, "sizeof(kvq_memset_args.struct_size)");
_Static_assert(offsetof(kvq_memset_args, dst) == 8, "offsetof(kvq_memset_args, dst)");
_Static_assert(FIELD_SIZE(kvq_memset_args, dst) == 8, "sizeof(kvq_memset_args.dst)");
_Static_assert(offsetof(kvq_memset_args, bytes) == 16, "offsetof(kvq_memset_args, bytes)");
_Static_assert(FIELD_SIZE(kvq_memset_args, bytes) == 8, "sizeof(kvq_memset_args.bytes)");
_Static_assert(offsetof(kvq_memset_args, value) == 24, "offsetof(kvq_memset_args, value)");
_Static_assert(FIELD_SIZE(kvq_memset_args, value) == 1, "sizeof(kvq_memset_args.value)");
_Static_assert(offsetof(kvq_memset_args, reserved) == 25, "offsetof(kvq_memset_args, reserved)");
_Static_assert(FIELD_SIZE(kvq_memset_args, reserved) == 7, "sizeof(kvq_memset_args.reserved)");
_Static_assert(offsetof(kvq_memset_args, stream) == 32, "offsetof(kvq_memset_args, stream)");
_Static_assert(FIELD_SIZE(kvq_memset_args, stream) == 8, "sizeof(kvq_memset_args.stream)");

/* kvq_param_load_args (1.1) */
_Static_assert(sizeof(kvq_param_load_args) == 32, "sizeof(kvq_param_load_args)");
_Static_assert(_Alignof(kvq_param_load_args) == 8, "alignof(kvq_param_load_args)");
_Static_assert(offsetof(kvq_param_load_args, struct_size) == 0, "offsetof(kvq_param_load_args, struct_size)");
_Static_assert(FIELD_SIZE(kvq_param_load_args, struct_size) == 8, "sizeof(kvq_param_load_args.struct_size)");
_Static_assert(offsetof(kvq_param_load_args, name) == 8, "offsetof(kvq_param_load_args, name)");
_Static_assert(FIELD_SIZE(kvq_param_load_args, name) == 8, "sizeof(kvq_param_load_args.name)");
_Static_assert(offsetof(kvq_param_load_args, loaded) == 16, "offsetof(kvq_param_load_args, loaded)");
_Static_assert(FIELD_SIZE(kvq_param_load_args, loaded) == 8, "sizeof(kvq_param_load_args.loaded)");
_Static_assert(offsetof(kvq_param_load_args, tp_rank) == 24, "offsetof(kvq_param_load_args, tp_rank)");
_Static_assert(FIELD_SIZE(kvq_param_load_args, tp_rank) == 4, "sizeof(kvq_param_load_args.tp_rank)");
_Static_assert(offsetof(kvq_param_load_args, tp_size) == 28, "offsetof(kvq_param_load_args, tp_size)");
_Static_assert(FIELD_SIZE(kvq_param_load_args, tp_size) == 4, "sizeof(kvq_param_load_args.tp_size)");

/* kvq_param_read_args (1.1) */
_Static_assert(sizeof(kvq_param_read_args) == 24, "sizeof(kvq_param_read_args)");
_Static_assert(_Alignof(kvq_param_read_args) == 8, "alignof(kvq_param_read_args)");
_Static_assert(offsetof(kvq_param_read_args, struct_size) == 0, "offsetof(kvq_param_read_args, struct_size)");
_Static_assert(FIELD_SIZE(kvq_param_read_args, struct_size) == 8, "sizeof(kvq_param_read_args.struct_size)");
_Static_assert(offsetof(kvq_param_read_args, name) == 8, "offsetof(kvq_param_read_args, name)");
_Static_assert(FIELD_SIZE(kvq_param_read_args, name) == 8, "sizeof(kvq_param_read_args.name)");
_Static_assert(offsetof(kvq_param_read_args, dst) == 16, "offsetof(kvq_param_read_args, dst)");
_Static_assert(FIELD_SIZE(kvq_param_read_args, dst) == 8, "sizeof(kvq_param_read_args.dst)");

/* kvq_param_query (1.1) */
_Static_assert(sizeof(kvq_param_query) == 24, "sizeof(kvq_param_query)");
_Static_assert(_Alignof(kvq_param_query) == 8, "alignof(kvq_param_query)");
_Static_assert(offsetof(kvq_param_query, struct_size) == 0, "offsetof(kvq_param_query, struct_size)");
_Static_assert(FIELD_SIZE(kvq_param_query, struct_size) == 8, "sizeof(kvq_param_query.struct_size)");
_Static_assert(offsetof(kvq_param_query, index) == 8, "offsetof(kvq_param_query, index)");
_Static_assert(FIELD_SIZE(kvq_param_query, index) == 8, "sizeof(kvq_param_query.index)");
_Static_assert(offsetof(kvq_param_query, name) == 16, "offsetof(kvq_param_query, name)");
_Static_assert(FIELD_SIZE(kvq_param_query, name) == 8, "sizeof(kvq_param_query.name)");

/* kvq_select_scheme_args (1.1) */
_Static_assert(sizeof(kvq_select_scheme_args) == 40, "sizeof(kvq_select_scheme_args)");
_Static_assert(_Alignof(kvq_select_scheme_args) == 8, "alignof(kvq_select_scheme_args)");
_Static_assert(offsetof(kvq_select_scheme_args, struct_size) == 0, "offsetof(kvq_select_scheme_args, struct_size)");
_Static_assert(FIELD_SIZE(kvq_select_scheme_args, struct_size) == 8, "sizeof(kvq_select_scheme_args.struct_size)");
_Static_assert(offsetof(kvq_select_scheme_args, description) == 8, "offsetof(kvq_select_scheme_args, description)");
_Static_assert(FIELD_SIZE(kvq_select_scheme_args, description) == 8, "sizeof(kvq_select_scheme_args.description)");
_Static_assert(offsetof(kvq_select_scheme_args, source) == 16, "offsetof(kvq_select_scheme_args, source)");
_Static_assert(FIELD_SIZE(kvq_select_scheme_args, source) == 8, "sizeof(kvq_select_scheme_args.source)");
_Static_assert(offsetof(kvq_select_scheme_args, layer_prefix) == 24, "offsetof(kvq_select_scheme_args, layer_prefix)");
_Static_assert(FIELD_SIZE(kvq_select_scheme_args, layer_prefix) == 8, "sizeof(kvq_select_scheme_args.layer_prefix)");
_Static_assert(offsetof(kvq_select_scheme_args, layer_type) == 32, "offsetof(kvq_select_scheme_args, layer_type)");
_Static_assert(FIELD_SIZE(kvq_select_scheme_args, layer_type) == 8, "sizeof(kvq_select_scheme_args.layer_type)");

/* kvq_scheme_choice (1.1) */
_Static_assert(sizeof(kvq_scheme_choice) == 16, "sizeof(kvq_scheme_choice)");
_Static_assert(_Alignof(kvq_scheme_choice) == 8, "alignof(kvq_scheme_choice)");
_Static_assert(offsetof(kvq_scheme_choice, struct_size) == 0, "offsetof(kvq_scheme_choice, struct_size)");
_Static_assert(FIELD_SIZE(kvq_scheme_choice, struct_size) == 8, "sizeof(kvq_scheme_choice.struct_size)");
_Static_assert(offsetof(kvq_scheme_choice, quant_type) == 8, "offsetof(kvq_scheme_choice, quant_type)");
_Static_assert(FIELD_SIZE(kvq_scheme_choice, quant_type) == 8, "sizeof(kvq_scheme_choice.quant_type)");

/* kvq_plugin_api (1.1 tail) */
_Static_assert(offsetof(kvq_plugin_api, device_alloc) == 192, "offsetof(kvq_plugin_api, device_alloc)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, device_alloc) == 8, "sizeof(kvq_plugin_api.device_alloc)");
_Static_assert(offsetof(kvq_plugin_api, device_free) == 200, "offsetof(kvq_plugin_api, device_free)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, device_free) == 8, "sizeof(kvq_plugin_api.device_free)");
_Static_assert(offsetof(kvq_plugin_api, device_memcpy) == 208, "offsetof(kvq_plugin_api, device_memcpy)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, device_memcpy) == 8, "sizeof(kvq_plugin_api.device_memcpy)");
_Static_assert(offsetof(kvq_plugin_api, device_memset) == 216, "offsetof(kvq_plugin_api, device_memset)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, device_memset) == 8, "sizeof(kvq_plugin_api.device_memset)");
_Static_assert(offsetof(kvq_plugin_api, stream_create) == 224, "offsetof(kvq_plugin_api, stream_create)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, stream_create) == 8, "sizeof(kvq_plugin_api.stream_create)");
_Static_assert(offsetof(kvq_plugin_api, stream_destroy) == 232, "offsetof(kvq_plugin_api, stream_destroy)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, stream_destroy) == 8, "sizeof(kvq_plugin_api.stream_destroy)");
_Static_assert(offsetof(kvq_plugin_api, synchronize) == 240, "offsetof(kvq_plugin_api, synchronize)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, synchronize) == 8, "sizeof(kvq_plugin_api.synchronize)");
_Static_assert(offsetof(kvq_plugin_api, param_load2) == 248, "offsetof(kvq_plugin_api, param_load2)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, param_load2) == 8, "sizeof(kvq_plugin_api.param_load2)");
_Static_assert(offsetof(kvq_plugin_api, param_read2) == 256, "offsetof(kvq_plugin_api, param_read2)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, param_read2) == 8, "sizeof(kvq_plugin_api.param_read2)");
_Static_assert(offsetof(kvq_plugin_api, param_info2) == 264, "offsetof(kvq_plugin_api, param_info2)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, param_info2) == 8, "sizeof(kvq_plugin_api.param_info2)");
_Static_assert(offsetof(kvq_plugin_api, select_scheme2) == 272, "offsetof(kvq_plugin_api, select_scheme2)");
_Static_assert(FIELD_SIZE(kvq_plugin_api, select_scheme2) == 8, "sizeof(kvq_plugin_api.select_scheme2)");

/* ---------------------------------------------------------- runtime */

/* A table as an older plugin would ship it: it ends after get_info. */
static int api_has_respects_struct_size(void) {
  kvq_plugin_api api;
  memset(&api, 0, sizeof api);
  api.struct_size = KVQ_STRUCT_SIZE(kvq_plugin_api, get_info);
  /* Pointers past the table's size must not be looked at even when the
   * memory behind them happens to be non-NULL. */
  api.layer_create = (kvq_error * (*)(kvq_instance*, const kvq_layer_config*, kvq_layer**))1;
  api.get_info = (kvq_error * (*)(const kvq_instance*, kvq_plugin_info*))1;
  return KVQ_API_HAS(&api, get_info) && !KVQ_API_HAS(&api, layer_create) &&
         !KVQ_API_HAS(&api, probe);
}

int main(void) {
  /* The entry symbol's name is part of the contract too. */
  if (strcmp(KVQ_PLUGIN_ENTRY_SYMBOL, "kvq_plugin_entry") != 0) return 1;
  if (!api_has_respects_struct_size()) return 2;
  return 0;
}
