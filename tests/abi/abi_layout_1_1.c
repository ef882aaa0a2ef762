/*
 * abi_layout_1_1.c — the fields, enum values and sizes appended in ABI 1.1,
 * pinned like abi_layout_test.c pins v1.0 (the same executable: these are
 * compile-time checks, so building this file is the test).
 *
 * Plain C11 on purpose: this is what a C host sees.
 */
#include <stddef.h>
#include <stdint.h>

#include "kvq_abi.h"

/* Size of one member, without needing an object of the struct type. */
#define FIELD_SIZE(type, field) sizeof(((type*)0)->field)

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
