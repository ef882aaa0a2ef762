/*
 * kvq_abi.h — the kvq plugin ABI, major version 1, minor 1.
 *
 * This header is the whole contract between a host engine and a kvq plugin
 * (a shared library that implements quantized-KV-cache attention backends).
 * It is plain C11 and also compiles as C++. kvq_abi_names.h beside it has
 * the name tables of its enums (error codes, dtypes, devices, states).
 *
 * VERSIONS
 *   1.0  CPU plugins over host memory.
 *   1.1  (append-only) hardware backends: device types, the device the host
 *        chooses at negotiation, plugin-side device memory and streams,
 *        stream-ordered cache_write / forward, struct-argument variants of the
 *        positional functions, parameter roles, a backend's layer options and
 *        a scheme's backend. A 1.0 host keeps working with a 1.1 plugin (it
 *        never sees the new fields) and a 1.1 host with a 1.0 plugin (it
 *        checks struct_size and KVQ_API_HAS before using anything new).
 *
 * HOW A HOST USES A PLUGIN
 *   1. dlopen(path, RTLD_NOW | RTLD_LOCAL); dlsym(KVQ_PLUGIN_ENTRY_SYMBOL).
 *      Never dlclose a plugin while any object it created may be alive.
 *   2. api = kvq_plugin_entry(); check api->abi_major == KVQ_ABI_MAJOR.
 *   3. api->negotiate(&host_info, &instance)   -- always the first call.
 *      The plugin answers with min(host minor, plugin minor), or refuses a
 *      different major with KVQ_ERR_VERSION_MISMATCH.
 *   4. api->get_info(instance, &info): backends, KV modes, schemes, CPU level.
 *   5. Per attention layer: layer_create -> (apply_scheme -> param_load ... ->
 *      process_weights) -> cache_geometry -> host allocates the KV cache ->
 *      cache_init -> per step: cache_write, forward.
 *   6. Destroy layers, then the instance.
 *
 * DEVICE MEMORY (1.1)
 *   plugin_info.device_type says where a plugin computes. KVQ_DEVICE_CPU: every
 *   tensor (KV cache, query/key/value/output, batch metadata) is host memory
 *   the host allocates as it likes. Any other type: the KV cache, query,
 *   key, value, output, block_table and slot_mapping must be memory of that
 *   device (tensor.device_type set to it, device_id = the negotiated
 *   ordinal): the host allocates it with device_alloc and moves bytes with
 *   device_memcpy / device_memset (or passes device memory it owns, as an
 *   engine with its own GPU runtime does). query_start_loc and seq_lens may
 *   be host or device memory (the plugin plans its launch from them; host
 *   memory spares it a download). Scheme parameters stay inside the plugin;
 *   param_load / param_read always take host tensors. A host that never
 *   dereferences a device pointer needs no GPU runtime of its own.
 *
 * STREAMS AND COMPLETION (1.1)
 *   cache_write and forward take an optional stream (stream_create). With
 *   stream == NULL the call is complete when it returns: its outputs are
 *   written and readable by any later call or copy, and any error, including
 *   one found on the device, is its return value. With a stream, the call
 *   validates what it can without waiting (struct sizes, shapes, dtypes,
 *   host-visible metadata) and returns; its work runs in stream order. An
 *   error found on the device (a slot or block-table entry out of range, a
 *   NaN/Inf key into a quantized cache) is returned by the next synchronize()
 *   of that stream (the first such error since the previous synchronize,
 *   with its message). A refused cache_write writes nothing, whichever way
 *   it is refused: the plugin validates on the device before it writes.
 *   Work on different streams is unordered; device_memcpy / device_memset on
 *   the same stream are ordered with it.

 *
 * RULES THAT HOLD FOR EVERY FUNCTION BELOW
 *   Errors:     every fallible function returns kvq_error*; NULL means success.
 *               A non-NULL error is owned by the caller, who must release it
 *               with api->error_destroy (which accepts NULL). The message lives
 *               until the error is destroyed. No C++ exception, abort(), exit()
 *               or assert() ever crosses this boundary.
 *   Structs:    every struct that crosses the boundary starts with
 *               uint64_t struct_size = offsetof(last field) + sizeof(last field)
 *               as the caller compiled it (use KVQ_STRUCT_SIZE / the *_SIZE
 *               macros). Fields are only ever appended (a new minor).
 *               A callee given a struct smaller than the v1.0 size fails with
 *               KVQ_ERR_INVALID_ARGUMENT; given a larger one it ignores the
 *               unknown tail. For structs the plugin fills (out-parameters) the
 *               host sets struct_size; the plugin writes no byte past it.
 *   Optional:   a function pointer in the api table may be NULL, and a table
 *               smaller than this header's may lack it: check
 *               KVQ_API_HAS(api, field) before calling. Missing means
 *               "unimplemented", never an abort.
 *   Types:      fixed-width only; enums are int32_t with explicit values and
 *               0 = invalid; booleans are uint8_t; shapes/strides are int64_t.
 *   Ownership:  whoever allocates frees. Host tensors are borrowed for the
 *               duration of the call only. Strings and arrays the plugin
 *               returns live as long as the object that returned them (stated
 *               per function). Never free() anything across the boundary.
 *   Threading:  functions on kvq_instance are thread-safe. Calls on one
 *               kvq_layer are serialised by the host; different layers (of one
 *               or several instances) may be driven concurrently.
 *   Logging:    a plugin never writes to stdout/stderr; it reports through the
 *               host's log callback given at negotiation.
 *   Memory:     the host owns the KV cache memory. It asks cache_geometry for
 *               the bytes per block, allocates, and passes the buffer to every
 *               cache_init / cache_write / forward call.
 */
#ifndef KVQ_ABI_H
#define KVQ_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- versions */

#define KVQ_ABI_MAJOR 1
#define KVQ_ABI_MINOR 1

/* The one symbol a plugin exports; its type is kvq_plugin_entry_fn. */
#define KVQ_PLUGIN_ENTRY_SYMBOL "kvq_plugin_entry"

/* Size of a struct up to and including `field`: the value of struct_size.
 * (C++ spells it without a null-pointer cast, so -Wold-style-cast hosts build.) */
#ifdef __cplusplus
#define KVQ_STRUCT_SIZE(type, field) (offsetof(type, field) + sizeof(type::field))
#else
#define KVQ_STRUCT_SIZE(type, field) (offsetof(type, field) + sizeof(((type*)0)->field))
#endif

/* 1 when the api table `api` contains `field` and it is set. */
#define KVQ_API_HAS(api, field)                                                                    \
  ((api)->struct_size >= KVQ_STRUCT_SIZE(kvq_plugin_api, field) && (api)->field != NULL)

#ifdef __cplusplus
#define KVQ_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define KVQ_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define KVQ_MAX_DIMS 8

/* ------------------------------------------------------------------- enums */

/* Error codes (kvq_error_code). */
enum {
  KVQ_ERR_INVALID_ARGUMENT = 1,    /* malformed input: NULL, bad size, shape, dtype, enum */
  KVQ_ERR_UNSUPPORTED = 2,         /* well-formed but not implemented by this plugin */
  KVQ_ERR_VERSION_MISMATCH = 3,    /* different ABI major */
  KVQ_ERR_OUT_OF_RANGE = 4,        /* slot, block index, sequence length out of range */
  KVQ_ERR_NOT_FOUND = 5,           /* unknown backend, scheme or parameter name */
  KVQ_ERR_ALREADY_EXISTS = 6,      /* duplicate registration */
  KVQ_ERR_FAILED_PRECONDITION = 7, /* wrong state: e.g. scales never loaded */
  KVQ_ERR_NON_FINITE = 8,          /* NaN/Inf where a finite value is required */
  KVQ_ERR_INTERNAL = 9,            /* a bug in the plugin */
  KVQ_ERR_OUT_OF_MEMORY = 10
};

/* Element types (kvq_dtype). Values are frozen; new types are appended. */
enum {
  KVQ_DTYPE_F32 = 1,
  KVQ_DTYPE_F16 = 2,
  KVQ_DTYPE_BF16 = 3,
  KVQ_DTYPE_I8 = 4,
  KVQ_DTYPE_U8 = 5,
  KVQ_DTYPE_F8_E4M3FN = 6, /* max 448, no inf, NaN = 0x7F/0xFF */
  KVQ_DTYPE_F8_E5M2 = 7,   /* max 57344, IEEE-like */
  KVQ_DTYPE_I32 = 8,
  KVQ_DTYPE_I64 = 9,
  KVQ_DTYPE_F64 = 10
};

/* Device types (kvq_tensor.device_type, kvq_plugin_info.device_type). */
enum {
  KVQ_DEVICE_CPU = 1,   /* host memory */
  KVQ_DEVICE_CUDA = 2,  /* 1.1: an NVIDIA GPU's memory (device_id = the CUDA ordinal) */
  /* 1.1: memory of a plugin-defined kind that only the plugin's device hooks
   * can read or write (a test arena, an accelerator without a CUDA runtime);
   * its addresses mean nothing to the host. */
  KVQ_DEVICE_OPAQUE = 3
};

/* Parameter roles (kvq_param_info.role, 1.1): what a scheme's parameter is,
 * so a host needs no name table. Shapes are those param_info reports; the
 * shapes a loader accepts from a checkpoint are in kvq_param_info.load_shapes. */
enum {
  KVQ_PARAM_ROLE_OTHER = 1,   /* implementation-specific; see the loader name */
  KVQ_PARAM_ROLE_K_SCALE = 2, /* fp8 per-tensor K scale: [1], or [num_kv_heads] per head */
  KVQ_PARAM_ROLE_V_SCALE = 3, /* fp8 per-tensor V scale: [1] or [num_kv_heads] */
  KVQ_PARAM_ROLE_Q_SCALE = 4, /* fp8 query scale: [1] or [num_heads] */
  KVQ_PARAM_ROLE_KV_SCALE = 5, /* legacy fp8 scale for both K and V: [1] */
  KVQ_PARAM_ROLE_K_CHANNEL_SCALE = 6,  /* C8: [num_kv_heads * head_size], bf16 */
  KVQ_PARAM_ROLE_K_CHANNEL_OFFSET = 7, /* C8 */
  KVQ_PARAM_ROLE_V_CHANNEL_SCALE = 8,  /* C8: [num_kv_heads * head_size_v] */
  KVQ_PARAM_ROLE_V_CHANNEL_OFFSET = 9, /* C8 */
  KVQ_PARAM_ROLE_DERIVED = 10 /* computed by process_weights, never loaded */
};

/* Log levels for kvq_log_fn. */
enum {
  KVQ_LOG_TRACE = 1,
  KVQ_LOG_DEBUG = 2,
  KVQ_LOG_INFO = 3,
  KVQ_LOG_WARN = 4,
  KVQ_LOG_ERROR = 5
};

/* Attention states of a forward batch. These are vllm-ascend's
 * AscendAttentionState values plus one (0 is invalid here). Backends that do
 * not distinguish states (unified attention) accept every valid value. */
enum {
  KVQ_ATTN_PREFILL_NO_CACHE = 1,  /* every request new: attend over float K/V */
  KVQ_ATTN_PREFILL_CACHE_HIT = 2, /* prefills with cached context */
  KVQ_ATTN_DECODE_ONLY = 3,       /* every request schedules exactly one token */
  KVQ_ATTN_CHUNKED_PREFILL = 4,   /* decodes first, then prefill chunks */
  KVQ_ATTN_SPEC_DECODING = 5      /* speculative decode: few query tokens each */
};

/* KV cache byte layouts (kvq_cache_layout). */
enum {
  /* One buffer per layer: [num_blocks][2 (K then V)][block_size][num_kv_heads][row_bytes].
   * A row holds head_size (K) or head_size_v (V) elements of element_dtype,
   * padded to row_bytes. Per-token-head modes (kvq_kv_mode_info.per_token_head)
   * need head_size_v == head_size (one row layout, as vLLM's) and store each
   * row's dequantization after its elements:
   *   int8 / fp8 e4m3:  head_size codes, then the row's float32 scale at byte
   *                     head_size (row_bytes = head_size + 4; head_size % 4 == 0,
   *                     so the scale is 4-byte aligned when the cache is).
   *                     value = code * scale.
   *   int4 (element_dtype U8): ceil(head_size / 2) bytes of nibbles, element
   *                     2i in the low nibble of byte i and 2i+1 in the high
   *                     nibble; then the float32 scale at byte ceil(head_size/2)
   *                     and the float32 zero point at ceil(head_size/2) + 4;
   *                     row_bytes = ceil(head_size/2) + 8. Those floats are
   *                     NOT 4-byte aligned in general (head_size 36: 26-byte
   *                     rows, scale at row offset 18): read them with memcpy
   *                     or byte loads. value = (nibble - zero_point) * scale.
   * All multi-byte values are little-endian. A fresh cache (cache_init) has
   * every code 0 and every scale 1.0 (int4: zero point 0.0). */
  KVQ_CACHE_LAYOUT_BLOCK_KV_SLOT_HEAD = 1,
  /* Keys only (an MLA latent cache, an indexer's key cache):
   * [num_blocks][block_size][num_kv_heads][row_bytes]. cache_write ignores
   * `value` (it may be NULL). */
  KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD = 2
};

/* ----------------------------------------------------------- basic objects */

typedef struct kvq_error kvq_error;       /* opaque; see error_* in the api */
typedef struct kvq_instance kvq_instance; /* one negotiated plugin session */
typedef struct kvq_layer kvq_layer;       /* one attention layer */
typedef struct kvq_stream kvq_stream;     /* 1.1: a plugin's queue of device work (a CUDA stream) */

/* Host logging callback. `message` is valid only during the call. May be
 * called from any thread that is inside a plugin call. */
typedef void (*kvq_log_fn)(void* user_data, int32_t level, const char* message);

/* A borrowed tensor (DLPack-like). `data` is memory of device_type (see
 * DEVICE MEMORY above); device_id is the device's ordinal (0 for the CPU).
 * Strides are in elements (not bytes) and must be
 * given for every dimension; row-major contiguous means
 * strides[i] = prod(shape[i+1..]). Shapes are >= 0. */
typedef struct kvq_tensor {
  uint64_t struct_size;
  void* data;
  int32_t device_type; /* KVQ_DEVICE_* */
  int32_t device_id;
  int32_t dtype; /* KVQ_DTYPE_* */
  int32_t ndim;  /* 0..KVQ_MAX_DIMS */
  int64_t shape[KVQ_MAX_DIMS];
  int64_t strides[KVQ_MAX_DIMS];
} kvq_tensor;
#define KVQ_TENSOR_SIZE KVQ_STRUCT_SIZE(kvq_tensor, strides)

/* -------------------------------------------------------------- negotiation */

/* Given by the host to negotiate(). Copied by the plugin. */
typedef struct kvq_host_info {
  uint64_t struct_size;
  uint32_t abi_major; /* must equal the plugin's major */
  uint32_t abi_minor; /* highest minor the host knows */
  kvq_log_fn log;     /* may be NULL: then the plugin stays silent */
  void* log_user_data;
  int32_t log_level;   /* lowest level the host wants; 0 = KVQ_LOG_INFO */
  int32_t num_threads; /* worker threads per call; 0 = all cores */
  /* ---- 1.1 ---- */
  /* Which device of the plugin's device type this session uses (0-based; a
   * rank of `mpirun -np N` passes its local rank). A device plugin refuses an
   * ordinal it does not have with OUT_OF_RANGE naming how many it sees; CPU
   * plugins ignore it. A 1.0 host (smaller struct) gets ordinal 0. */
  int32_t device_ordinal;
  int32_t reserved_1_1;
} kvq_host_info;
#define KVQ_HOST_INFO_SIZE_1_0 KVQ_STRUCT_SIZE(kvq_host_info, num_threads)
#define KVQ_HOST_INFO_SIZE KVQ_STRUCT_SIZE(kvq_host_info, reserved_1_1)

/* Optional probe, callable before negotiate and compiled for the baseline ISA:
 * can this plugin run on this CPU? */
typedef struct kvq_probe_result {
  uint64_t struct_size;
  uint8_t can_run;
  uint8_t reserved[7];
  const char* reason;     /* static string: why not, or "" */
  const char* simd_level; /* static string: the level the plugin would use */
} kvq_probe_result;
#define KVQ_PROBE_RESULT_SIZE KVQ_STRUCT_SIZE(kvq_probe_result, simd_level)

/* ------------------------------------------------------------- capabilities */

/* One KV-cache mode a backend knows, by its user-facing string (the string is
 * what files persist; never persist a numeric mode). */
typedef struct kvq_kv_mode_info {
  uint64_t struct_size;
  const char* name;          /* e.g. "bfloat16", "int8_per_token_head" */
  const char* description;   /* one line */
  int32_t element_dtype;     /* KVQ_DTYPE_* of stored elements; 0 if model dtype */
  uint8_t supported;         /* 0: known but not built; layer_create answers UNSUPPORTED */
  uint8_t per_token_head;    /* scales stored inline per (slot, head) */
  uint8_t needs_scheme;      /* only reachable by applying a scheme (e.g. C8) */
  uint8_t reserved;
} kvq_kv_mode_info;
#define KVQ_KV_MODE_INFO_SIZE KVQ_STRUCT_SIZE(kvq_kv_mode_info, reserved)

/* 1.1: one key a backend accepts in kvq_layer_config.options. */
typedef struct kvq_option_info {
  uint64_t struct_size;
  const char* name;          /* e.g. "calculate_kv_scales" */
  const char* description;   /* one line, with the accepted values */
  const char* default_value; /* what an absent key means, e.g. "false" */
  const char* kv_modes;      /* space-separated modes that read it; "" = every mode */
} kvq_option_info;
#define KVQ_OPTION_INFO_SIZE KVQ_STRUCT_SIZE(kvq_option_info, kv_modes)

typedef struct kvq_backend_info {
  uint64_t struct_size;
  const char* name; /* passed as kvq_layer_config.backend */
  const char* description;
  int64_t num_kv_modes;
  const kvq_kv_mode_info* const* kv_modes;
  uint32_t attention_states; /* bit (1u << KVQ_ATTN_x) set for each state forward accepts */
  uint32_t reserved;
  /* ---- 1.1 ---- (read only when struct_size covers them) */
  /* Every key layer_create accepts in kvq_layer_config.options; any other
   * key is refused with INVALID_ARGUMENT naming it. */
  int64_t num_layer_options;
  const kvq_option_info* const* layer_options;
} kvq_backend_info;
#define KVQ_BACKEND_INFO_SIZE_1_0 KVQ_STRUCT_SIZE(kvq_backend_info, reserved)
#define KVQ_BACKEND_INFO_SIZE KVQ_STRUCT_SIZE(kvq_backend_info, layer_options)

/* A checkpoint-name remapping rule: a checkpoint tensor whose name ends with
 * `checkpoint_suffix` loads into the parameter named by replacing that suffix
 * with `param_suffix` (e.g. ".k_proj.kv_cache_scale" -> ".attn.k_cache_scale"). */
typedef struct kvq_name_rule {
  uint64_t struct_size;
  const char* checkpoint_suffix;
  const char* param_suffix;
} kvq_name_rule;
#define KVQ_NAME_RULE_SIZE KVQ_STRUCT_SIZE(kvq_name_rule, param_suffix)

/* A quantization scheme, keyed by (quant_type, layer_type), e.g. ("C8",
 * "attention"). The key is unique within a plugin.
 *
 * How a scheme-only KV mode is reached (kvq_kv_mode_info.needs_scheme, e.g.
 * the Ascend backend's "int8" of C8): layer_create with an unquantized mode
 * of the scheme's backend ("auto" or the model dtype), then apply_scheme with
 * the scheme's (quant_type, layer_type). The scheme declares its parameters,
 * switches the layer's mode (layer_info.kv_cache_dtype, element_dtype) and
 * may swap its implementation (layer_info.impl_name); cache_geometry is read
 * after that. Schemes named like a mode (the Triton backend's
 * "int8_per_token_head") upgrade an unquantized layer to that mode. */
typedef struct kvq_scheme_info {
  uint64_t struct_size;
  const char* quant_type;
  const char* layer_type;
  const char* description;
  uint8_t supported; /* 0: known but not built; apply_scheme answers UNSUPPORTED */
  uint8_t reserved[7];
  int64_t num_name_rules;
  const kvq_name_rule* const* name_rules;
  /* ---- 1.1 ---- */
  const char* backend; /* the kvq_backend_info.name whose layers it applies to */
} kvq_scheme_info;
#define KVQ_SCHEME_INFO_SIZE_1_0 KVQ_STRUCT_SIZE(kvq_scheme_info, name_rules)
#define KVQ_SCHEME_INFO_SIZE KVQ_STRUCT_SIZE(kvq_scheme_info, backend)

/* What a plugin offers. All strings and arrays live as long as the instance. */
typedef struct kvq_plugin_info {
  uint64_t struct_size;
  const char* name;
  const char* version; /* the plugin's own version, e.g. "0.1.0" */
  const char* vendor;
  uint32_t abi_major;
  uint32_t abi_minor;       /* the negotiated minor */
  const char* simd_level;   /* kernel level chosen at load, e.g. "avx512_bf16" */
  const char* cpu_features; /* space-separated features seen on this CPU */
  int64_t num_backends;
  const kvq_backend_info* const* backends;
  int64_t num_schemes;
  const kvq_scheme_info* const* schemes;
  /* ---- 1.1 ---- (written only when the host's struct_size covers them) */
  int32_t device_type;    /* KVQ_DEVICE_*: where this plugin computes and its caches live */
  int32_t device_ordinal; /* the device of this session (host_info.device_ordinal) */
  const char* device_name; /* e.g. "NVIDIA H200"; the CPU's model name for CPU plugins */
  uint64_t device_memory_bytes; /* total memory of that device; 0 = host memory / unknown */
  int32_t device_count;   /* devices of device_type the plugin can use */
  /* 1: the plugin implements the device memory hooks (device_alloc ...);
   * always 1 when device_type is not KVQ_DEVICE_CPU. */
  uint8_t has_device_memory;
  uint8_t reserved_1_1[3];
} kvq_plugin_info;
#define KVQ_PLUGIN_INFO_SIZE_1_0 KVQ_STRUCT_SIZE(kvq_plugin_info, schemes)
#define KVQ_PLUGIN_INFO_SIZE KVQ_STRUCT_SIZE(kvq_plugin_info, reserved_1_1)

/* ------------------------------------------------------------------ layers */

/* Describes one attention layer (this tensor-parallel rank's share). Copied by
 * the plugin. `options` is a flat array of 2*num_options strings,
 * key0, value0, key1, value1, ...; unknown keys are an error (1.1: the keys a
 * backend accepts are listed in kvq_backend_info.layer_options).
 *
 * Tensor parallelism: num_heads / num_kv_heads are this rank's heads
 * (the model's divided by tp_size); tp_rank / tp_size say which share it is.
 * The loaders (param_load) get the same two numbers and use them to cut a
 * full-model checkpoint tensor (e.g. C8's per-channel vectors) to this
 * rank's KV heads; a host passes the values it put in this config.
 *
 * model_dtype is the dtype of key, value and output, and of a float query.
 * The fp8-query path of fp8 per-tensor modes (vLLM's Q_IS_FP8) takes a query
 * of dtype F8_E4M3FN holding e4m3 codes of query / q_scale, where q_scale is
 * the layer's KVQ_PARAM_ROLE_Q_SCALE parameter (loaded, or calculated with
 * calculate_kv_scales); the score scale folds softmax_scale * q_scale *
 * k_scale, P is rounded to e4m3 before P·V and the output (model_dtype) is
 * multiplied by v_scale. Implementations without that path refuse an fp8
 * query with INVALID_ARGUMENT. */
typedef struct kvq_layer_config {
  uint64_t struct_size;
  const char* backend;        /* a kvq_backend_info.name */
  const char* layer_name;     /* e.g. "model.layers.0.self_attn.attn"; prefixes parameter names */
  const char* kv_cache_dtype; /* a mode string (kvq_kv_mode_info.name or an alias) */
  int32_t model_dtype;        /* dtype of query, key, value and output: F32, F16 or BF16 */
  int32_t layer_index;
  int64_t num_heads;     /* query heads on this rank */
  int64_t num_kv_heads;  /* KV heads on this rank; num_heads % num_kv_heads == 0 */
  int64_t head_size;     /* query/key head size */
  int64_t head_size_v;   /* value head size; 0 = head_size */
  int64_t block_size;    /* tokens per KV block */
  double softmax_scale;  /* 0 = 1/sqrt(head_size) */
  int64_t sliding_window; /* 0 = none; else a key j is visible when pos - j < sliding_window */
  double softcap;        /* 0 = none; else s = softcap * tanh(s / softcap) */
  int32_t tp_rank;
  int32_t tp_size; /* 0 is read as 1 */
  int64_t num_options;
  const char* const* options;
} kvq_layer_config;
#define KVQ_LAYER_CONFIG_SIZE KVQ_STRUCT_SIZE(kvq_layer_config, options)

/* A layer's current state. Strings live until the layer is destroyed. */
typedef struct kvq_layer_info {
  uint64_t struct_size;
  const char* impl_name;      /* the current implementation table; changes on a class upgrade */
  const char* kv_cache_dtype; /* the current mode string (a scheme may change it) */
  const char* scheme;         /* quant_type of the applied scheme, or "" */
  int32_t element_dtype;      /* KVQ_DTYPE_* of the cache elements */
  int32_t reserved;
  int64_t num_params;         /* parameters declared so far (see param_info) */
} kvq_layer_info;
#define KVQ_LAYER_INFO_SIZE KVQ_STRUCT_SIZE(kvq_layer_info, num_params)

/* The KV cache geometry of a layer in its current mode. */
typedef struct kvq_cache_geometry {
  uint64_t struct_size;
  int32_t layout;        /* KVQ_CACHE_LAYOUT_* */
  int32_t element_dtype; /* KVQ_DTYPE_* of stored elements */
  int64_t block_size;
  int64_t num_kv_heads;
  int64_t head_size;
  int64_t head_size_v;
  int64_t row_bytes;       /* bytes of one (block, K|V, slot, head) row */
  int64_t bytes_per_block; /* K and V of one block: 2 * block_size * num_kv_heads * row_bytes */
  int64_t alignment;       /* required alignment of the cache buffer, in bytes */
} kvq_cache_geometry;
#define KVQ_CACHE_GEOMETRY_SIZE KVQ_STRUCT_SIZE(kvq_cache_geometry, alignment)

/* The host's KV cache buffer is always passed as a U8 tensor of shape
 * [num_blocks, bytes_per_block], contiguous, aligned as the geometry says
 * (1.1: in the plugin's device memory when it has a device). */

typedef struct kvq_cache_write_args {
  uint64_t struct_size;
  const kvq_tensor* key;          /* [T, num_kv_heads, head_size], model dtype */
  const kvq_tensor* value;        /* [T, num_kv_heads, head_size_v], model dtype; NULL for keys-only layouts */
  const kvq_tensor* slot_mapping; /* [T] I64; slot = block * block_size + row; < 0 = skip */
  const kvq_tensor* kv_cache;     /* U8 [num_blocks, bytes_per_block] */
  int64_t num_tokens;             /* rows to write: the first num_tokens; 0 = all T */
  /* ---- 1.1 ---- */
  kvq_stream* stream; /* NULL: complete on return; else stream-ordered (see STREAMS) */
} kvq_cache_write_args;
#define KVQ_CACHE_WRITE_ARGS_SIZE_1_0 KVQ_STRUCT_SIZE(kvq_cache_write_args, num_tokens)
#define KVQ_CACHE_WRITE_ARGS_SIZE KVQ_STRUCT_SIZE(kvq_cache_write_args, stream)

/* One forward batch. S sequences, T = query_start_loc[S] query tokens.
 * Sequence s owns query rows [query_start_loc[s], query_start_loc[s+1]); its
 * seq_lens[s] keys (context + new tokens) live in the blocks
 * block_table[s][0..]; query i of the chunk is at absolute position
 * ctx + i with ctx = seq_len - query_len and sees keys j <= ctx + i
 * (causal, aligned bottom-right). GQA: query head h reads KV head
 * h / (num_heads / num_kv_heads). The new tokens' K/V must have been written
 * with cache_write before forward.
 *
 * What the attention state changes (kvq_backend_info.attention_states says
 * which states a backend accepts): unified backends (Triton) read every key
 * from the cache in every state. Ascend C8 follows vllm-ascend: in
 * PREFILL_NO_CACHE it attends over the batch's float key/value (not the
 * int8 cache), and in CHUNKED_PREFILL its prefill requests without context
 * are computed from the float key/value while decodes read the cache.
 * key/value may be NULL unless the implementation reads them in the given
 * state (then forward answers INVALID_ARGUMENT naming them). */
typedef struct kvq_forward_args {
  uint64_t struct_size;
  int32_t attention_state; /* KVQ_ATTN_* */
  int32_t reserved;
  const kvq_tensor* query;           /* [T, num_heads, head_size] */
  const kvq_tensor* key;             /* the batch's float K [T, num_kv_heads, head_size]; may be NULL */
  const kvq_tensor* value;           /* the batch's float V [T, num_kv_heads, head_size_v]; may be NULL */
  const kvq_tensor* kv_cache;        /* U8 [num_blocks, bytes_per_block] */
  const kvq_tensor* query_start_loc; /* [S+1] I32, non-decreasing, starts at 0 */
  const kvq_tensor* seq_lens;        /* [S] I32 */
  const kvq_tensor* block_table;     /* [S, max_blocks] I32 */
  const kvq_tensor* alibi_slopes;    /* [num_heads] F32 or NULL */
  const kvq_tensor* sinks;           /* [num_heads] F32 logits or NULL */
  /* Written. Attention: [T, num_heads, head_size_v] in the model dtype.
   * Scoring implementations state their own output (the INT8_DYNAMIC indexer:
   * I32 [T, top_k] key positions, -1 padded). */
  const kvq_tensor* output;
  const kvq_tensor* head_weights; /* [T, num_heads] per-head weights of a scoring
                                     implementation (the indexer); else NULL */
  /* ---- 1.1 ---- */
  kvq_stream* stream; /* NULL: complete on return; else stream-ordered (see STREAMS) */
} kvq_forward_args;
#define KVQ_FORWARD_ARGS_SIZE_1_0 KVQ_STRUCT_SIZE(kvq_forward_args, head_weights)
#define KVQ_FORWARD_ARGS_SIZE KVQ_STRUCT_SIZE(kvq_forward_args, stream)

/* ---------------------------------------------------- schemes & parameters */

/* Applying a scheme to a layer. options: flat key/value string pairs read
 * by the scheme (e.g. "kv_lora_rank", "512"); unknown keys are ignored. */
typedef struct kvq_scheme_args {
  uint64_t struct_size;
  const char* quant_type;
  const char* layer_type;
  int64_t num_options;
  const char* const* options;
} kvq_scheme_args;
#define KVQ_SCHEME_ARGS_SIZE KVQ_STRUCT_SIZE(kvq_scheme_args, options)

/* A parameter declared by a scheme (or derived after loading). Strings live
 * until the layer is destroyed. */
typedef struct kvq_param_info {
  uint64_t struct_size;
  const char* name;   /* full name, layer_name + "." + local name */
  const char* loader; /* the weight loader bound to it, e.g. "c8_kv_scale"; "" = not loadable */
  int32_t dtype;
  int32_t ndim;
  int64_t shape[KVQ_MAX_DIMS];
  uint8_t trainable;
  uint8_t derived; /* computed by process_weights, not loaded */
  uint8_t loaded;  /* a loader has filled it */
  uint8_t reserved[5];
  /* ---- 1.1 ---- */
  int32_t role; /* KVQ_PARAM_ROLE_* */
  int32_t reserved_1_1;
  /* The checkpoint shapes the loader accepts, in the full model's terms,
   * e.g. "[] | [1] | [num_kv_heads]" or "[num_kv_heads * head_size]
   * (sharded by tp_rank/tp_size)"; "" when not loadable. */
  const char* load_shapes;
} kvq_param_info;
#define KVQ_PARAM_INFO_SIZE_1_0 KVQ_STRUCT_SIZE(kvq_param_info, reserved)
#define KVQ_PARAM_INFO_SIZE KVQ_STRUCT_SIZE(kvq_param_info, load_shapes)

/* ------------------------------------------------ 1.1 argument structs */

/* device_memcpy: bytes from src to dst; each side is host memory
 * (KVQ_DEVICE_CPU) or the plugin's device memory. */
typedef struct kvq_memcpy_args {
  uint64_t struct_size;
  void* dst;
  int32_t dst_device_type; /* KVQ_DEVICE_CPU or plugin_info.device_type */
  int32_t reserved0;
  const void* src;
  int32_t src_device_type;
  int32_t reserved1;
  uint64_t bytes;
  kvq_stream* stream; /* NULL: the copy is complete when the call returns */
} kvq_memcpy_args;
#define KVQ_MEMCPY_ARGS_SIZE KVQ_STRUCT_SIZE(kvq_memcpy_args, stream)

/* device_memset: every byte of [dst, dst + bytes) of device memory = value. */
typedef struct kvq_memset_args {
  uint64_t struct_size;
  void* dst;
  uint64_t bytes;
  uint8_t value;
  uint8_t reserved[7];
  kvq_stream* stream; /* NULL: complete when the call returns */
} kvq_memset_args;
#define KVQ_MEMSET_ARGS_SIZE KVQ_STRUCT_SIZE(kvq_memset_args, stream)

/* param_load2: the 1.0 param_load's arguments, growable. */
typedef struct kvq_param_load_args {
  uint64_t struct_size;
  const char* name;          /* full parameter name (param_info.name) */
  const kvq_tensor* loaded;  /* the checkpoint tensor, host memory */
  int32_t tp_rank;           /* as in kvq_layer_config */
  int32_t tp_size;           /* 0 is read as 1 */
} kvq_param_load_args;
#define KVQ_PARAM_LOAD_ARGS_SIZE KVQ_STRUCT_SIZE(kvq_param_load_args, tp_size)

/* param_read2 */
typedef struct kvq_param_read_args {
  uint64_t struct_size;
  const char* name;
  const kvq_tensor* dst; /* host memory; same dtype and element count */
} kvq_param_read_args;
#define KVQ_PARAM_READ_ARGS_SIZE KVQ_STRUCT_SIZE(kvq_param_read_args, dst)

/* param_info2: a parameter by index (name == NULL) or by full name. */
typedef struct kvq_param_query {
  uint64_t struct_size;
  int64_t index;
  const char* name;
} kvq_param_query;
#define KVQ_PARAM_QUERY_SIZE KVQ_STRUCT_SIZE(kvq_param_query, name)

/* select_scheme2: the 1.0 select_scheme's inputs ... */
typedef struct kvq_select_scheme_args {
  uint64_t struct_size;
  const char* description;  /* text of e.g. quant_model_description.json */
  const char* source;       /* names the description in messages (a path) */
  const char* layer_prefix; /* e.g. "model.layers.0.self_attn" */
  const char* layer_type;   /* e.g. "attention" */
} kvq_select_scheme_args;
#define KVQ_SELECT_SCHEME_ARGS_SIZE KVQ_STRUCT_SIZE(kvq_select_scheme_args, layer_type)

/* ... and its answer (filled up to the caller's struct_size). */
typedef struct kvq_scheme_choice {
  uint64_t struct_size;
  const char* quant_type; /* a registered scheme, or "" = unquantized; lives as long as the instance */
} kvq_scheme_choice;
#define KVQ_SCHEME_CHOICE_SIZE KVQ_STRUCT_SIZE(kvq_scheme_choice, quant_type)

/* --------------------------------------------------------------- the table */

typedef struct kvq_plugin_api {
  uint64_t struct_size;
  uint32_t abi_major; /* the plugin's major */
  uint32_t abi_minor; /* the highest minor the plugin implements */

  /* ---- frozen across all majors: a host of any major may call these ---- */

  /* Version negotiation: the first call. Refuses a different major
   * (KVQ_ERR_VERSION_MISMATCH, message names both). On success *out is an
   * instance owned by the caller (instance_destroy). */
  kvq_error* (*negotiate)(const kvq_host_info* host, kvq_instance** out);
  /* Error accessors. error_code/message accept NULL (0 / ""). The message
   * lives until error_destroy; error_destroy accepts NULL. */
  int32_t (*error_code)(const kvq_error* error);
  const char* (*error_message)(const kvq_error* error);
  void (*error_destroy)(kvq_error* error);

  /* ---- v1.0 ---- */

  /* Accepts NULL. All layers of the instance must be destroyed first. */
  void (*instance_destroy)(kvq_instance* instance);
  /* Optional; thread-safe; needs no instance. */
  kvq_error* (*probe)(kvq_probe_result* out);
  /* Capabilities; thread-safe. Fills *out up to out->struct_size. */
  kvq_error* (*get_info)(const kvq_instance* instance, kvq_plugin_info* out);

  /* Create a layer with the backend's ordinary implementation for the
   * config's mode. Unknown backend -> NOT_FOUND; unknown mode string ->
   * INVALID_ARGUMENT; known but not built -> UNSUPPORTED; geometry rules
   * broken -> INVALID_ARGUMENT. Thread-safe. *out owned by the caller. */
  kvq_error* (*layer_create)(kvq_instance* instance, const kvq_layer_config* config,
                             kvq_layer** out);
  void (*layer_destroy)(kvq_layer* layer); /* accepts NULL */
  kvq_error* (*layer_info)(const kvq_layer* layer, kvq_layer_info* out);

  /* KV cache. */
  kvq_error* (*cache_geometry)(const kvq_layer* layer, kvq_cache_geometry* out);
  /* Initialises a fresh cache: data zero, inline scales 1.0. */
  kvq_error* (*cache_init)(kvq_layer* layer, const kvq_tensor* kv_cache);
  /* reshape_and_cache. Validates everything first: on any error nothing is
   * written (bad slot -> OUT_OF_RANGE, NaN/Inf in a quantized mode ->
   * NON_FINITE naming token and head). */
  kvq_error* (*cache_write)(kvq_layer* layer, const kvq_cache_write_args* args);

  /* NULL when forward would accept exactly these arguments (data pointers may
   * be NULL here; only shapes, dtypes and the batch description are read);
   * else the error forward would return (UNSUPPORTED with the reason for
   * well-formed input the plugin cannot run). */
  kvq_error* (*supports)(const kvq_layer* layer, const kvq_forward_args* args);
  /* Attention over the batch; writes every element of args->output. */
  kvq_error* (*forward)(kvq_layer* layer, const kvq_forward_args* args);

  /* Scheme registry and parameters. */
  /* Declares the scheme's parameters on the layer and may upgrade the layer's
   * implementation (observable through layer_info). Unknown key -> NOT_FOUND;
   * applied twice -> FAILED_PRECONDITION. */
  kvq_error* (*apply_scheme)(kvq_layer* layer, const kvq_scheme_args* args);
  /* Calls the applied scheme's own apply (vLLM's QuantizeMethod.apply).
   * Schemes whose work the attention backend does answer FAILED_PRECONDITION. */
  kvq_error* (*scheme_apply)(kvq_layer* layer);
  kvq_error* (*param_info)(const kvq_layer* layer, int64_t index, kvq_param_info* out);
  /* Copies a parameter's current value into dst (same dtype and element count). */
  kvq_error* (*param_read)(const kvq_layer* layer, const char* name, const kvq_tensor* dst);
  /* Weight loader hook: hands a checkpoint tensor to the loader bound to the
   * named parameter, with this rank's tensor-parallel position. The loader
   * squeezes, re-creates or shards as its scheme defines; a shape it cannot
   * take fails with INVALID_ARGUMENT naming both shapes and the TP size. */
  kvq_error* (*param_load)(kvq_layer* layer, const char* name, const kvq_tensor* loaded,
                           int32_t tp_rank, int32_t tp_size);
  /* process_weights_after_loading: finalises derived tensors. Idempotent. */
  kvq_error* (*process_weights)(kvq_layer* layer);

  /* Optional. Chooses the scheme of one layer from a checkpoint's quantization
   * description (the text of e.g. quant_model_description.json), in the order
   * the plugin's engine uses. `source` names the description in messages (a
   * file path); layer_prefix is e.g. "model.layers.0.self_attn"; layer_type
   * e.g. "attention". *quant_type receives a registered scheme's quant_type,
   * or "" when the layer stays unquantized; it lives as long as the instance.
   * Malformed text, an unknown quant type or contradictory keys ->
   * INVALID_ARGUMENT naming the source and the key. Thread-safe. */
  kvq_error* (*select_scheme)(const kvq_instance* instance, const char* description,
                              const char* source, const char* layer_prefix,
                              const char* layer_type, const char** quant_type);

  /* ---- v1.1 (check KVQ_API_HAS before calling) ---- */

  /* Device memory, optional: a CPU plugin leaves these NULL and the host
   * uses host memory. Thread-safe. device_alloc returns `bytes` (> 0) of
   * uninitialised device memory aligned to 256 bytes (OUT_OF_MEMORY naming
   * the size when the device has too little). device_free accepts NULL;
   * work still using the buffer must have completed (synchronize first). */
  kvq_error* (*device_alloc)(kvq_instance* instance, uint64_t bytes, void** out);
  void (*device_free)(kvq_instance* instance, void* ptr);
  kvq_error* (*device_memcpy)(kvq_instance* instance, const kvq_memcpy_args* args);
  kvq_error* (*device_memset)(kvq_instance* instance, const kvq_memset_args* args);
  /* Streams (device plugins): stream_destroy waits for the stream's work and
   * accepts NULL. synchronize waits until every call enqueued on `stream`
   * (NULL: on every stream of the instance) has completed, then returns the
   * first error found on the device since the previous synchronize of that
   * stream (NULL when there was none). Thread-safe for different streams. */
  kvq_error* (*stream_create)(kvq_instance* instance, kvq_stream** out);
  void (*stream_destroy)(kvq_instance* instance, kvq_stream* stream);
  kvq_error* (*synchronize)(kvq_instance* instance, kvq_stream* stream);

  /* Struct-argument variants of the positional 1.0 functions (same
   * behaviour); the 1.0 entries stay. */
  kvq_error* (*param_load2)(kvq_layer* layer, const kvq_param_load_args* args);
  kvq_error* (*param_read2)(const kvq_layer* layer, const kvq_param_read_args* args);
  kvq_error* (*param_info2)(const kvq_layer* layer, const kvq_param_query* query,
                            kvq_param_info* out);
  kvq_error* (*select_scheme2)(const kvq_instance* instance, const kvq_select_scheme_args* args,
                               kvq_scheme_choice* out);
} kvq_plugin_api;
#define KVQ_PLUGIN_API_SIZE_1_0 KVQ_STRUCT_SIZE(kvq_plugin_api, select_scheme)
#define KVQ_PLUGIN_API_SIZE KVQ_STRUCT_SIZE(kvq_plugin_api, select_scheme2)

/* The exported entry point. Returns a static table; never NULL; no side
 * effects, so it is safe to call before anything else. */
typedef const kvq_plugin_api* (*kvq_plugin_entry_fn)(void);

/* ------------------------------------------------------------- frozen sizes */
/* The released sizes on LP64 targets. A change here is an ABI break. The
 * field offsets are pinned in tests/abi/abi_layout_test.c. Structs that grew
 * in 1.1 keep their 1.0 size as *_SIZE_1_0: a callee given at least that
 * much reads the 1.0 fields and defaults the rest. */
KVQ_STATIC_ASSERT(sizeof(void*) == 8, "kvq ABI v1 is defined for 64-bit targets");
KVQ_STATIC_ASSERT(KVQ_TENSOR_SIZE == 160, "kvq_tensor v1.0 size");
KVQ_STATIC_ASSERT(KVQ_HOST_INFO_SIZE_1_0 == 40, "kvq_host_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_PROBE_RESULT_SIZE == 32, "kvq_probe_result v1.0 size");
KVQ_STATIC_ASSERT(KVQ_KV_MODE_INFO_SIZE == 32, "kvq_kv_mode_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_BACKEND_INFO_SIZE_1_0 == 48, "kvq_backend_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_NAME_RULE_SIZE == 24, "kvq_name_rule v1.0 size");
KVQ_STATIC_ASSERT(KVQ_SCHEME_INFO_SIZE_1_0 == 56, "kvq_scheme_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_PLUGIN_INFO_SIZE_1_0 == 88, "kvq_plugin_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_LAYER_CONFIG_SIZE == 128, "kvq_layer_config v1.0 size");
KVQ_STATIC_ASSERT(KVQ_LAYER_INFO_SIZE == 48, "kvq_layer_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_CACHE_GEOMETRY_SIZE == 72, "kvq_cache_geometry v1.0 size");
KVQ_STATIC_ASSERT(KVQ_CACHE_WRITE_ARGS_SIZE_1_0 == 48, "kvq_cache_write_args v1.0 size");
KVQ_STATIC_ASSERT(KVQ_FORWARD_ARGS_SIZE_1_0 == 104, "kvq_forward_args v1.0 size");
KVQ_STATIC_ASSERT(KVQ_SCHEME_ARGS_SIZE == 40, "kvq_scheme_args v1.0 size");
KVQ_STATIC_ASSERT(KVQ_PARAM_INFO_SIZE_1_0 == 104, "kvq_param_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_PLUGIN_API_SIZE_1_0 == 192, "kvq_plugin_api v1.0 size");
/* 1.1 */
KVQ_STATIC_ASSERT(KVQ_HOST_INFO_SIZE == 48, "kvq_host_info v1.1 size");
KVQ_STATIC_ASSERT(KVQ_OPTION_INFO_SIZE == 40, "kvq_option_info v1.1 size");
KVQ_STATIC_ASSERT(KVQ_BACKEND_INFO_SIZE == 64, "kvq_backend_info v1.1 size");
KVQ_STATIC_ASSERT(KVQ_SCHEME_INFO_SIZE == 64, "kvq_scheme_info v1.1 size");
KVQ_STATIC_ASSERT(KVQ_PLUGIN_INFO_SIZE == 120, "kvq_plugin_info v1.1 size");
KVQ_STATIC_ASSERT(KVQ_CACHE_WRITE_ARGS_SIZE == 56, "kvq_cache_write_args v1.1 size");
KVQ_STATIC_ASSERT(KVQ_FORWARD_ARGS_SIZE == 112, "kvq_forward_args v1.1 size");
KVQ_STATIC_ASSERT(KVQ_PARAM_INFO_SIZE == 120, "kvq_param_info v1.1 size");
KVQ_STATIC_ASSERT(KVQ_MEMCPY_ARGS_SIZE == 56, "kvq_memcpy_args v1.1 size");
KVQ_STATIC_ASSERT(KVQ_MEMSET_ARGS_SIZE == 40, "kvq_memset_args v1.1 size");
KVQ_STATIC_ASSERT(KVQ_PARAM_LOAD_ARGS_SIZE == 32, "kvq_param_load_args v1.1 size");
KVQ_STATIC_ASSERT(KVQ_PARAM_READ_ARGS_SIZE == 24, "kvq_param_read_args v1.1 size");
KVQ_STATIC_ASSERT(KVQ_PARAM_QUERY_SIZE == 24, "kvq_param_query v1.1 size");
KVQ_STATIC_ASSERT(KVQ_SELECT_SCHEME_ARGS_SIZE == 40, "kvq_select_scheme_args v1.1 size");
KVQ_STATIC_ASSERT(KVQ_SCHEME_CHOICE_SIZE == 16, "kvq_scheme_choice v1.1 size");
KVQ_STATIC_ASSERT(KVQ_PLUGIN_API_SIZE == 280, "kvq_plugin_api v1.1 size");

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVQ_ABI_H */
