/*
 * kvq_abi.h — the kvq plugin ABI, major version 1.
 *
 * This header is the whole contract between a host engine and a kvq plugin
 * (a shared library that implements quantized-KV-cache attention backends).
 * It is plain C11 and also compiles as C++.
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
#define KVQ_ABI_MINOR 0

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

enum { KVQ_DEVICE_CPU = 1 };

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
   * followed, in per-token-head modes, by the row's float32 scale
   * (little-endian), padded to row_bytes. */
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

/* Host logging callback. `message` is valid only during the call. May be
 * called from any thread that is inside a plugin call. */
typedef void (*kvq_log_fn)(void* user_data, int32_t level, const char* message);

/* A borrowed tensor (DLPack-like). `data` may be device memory; today only
 * KVQ_DEVICE_CPU exists. Strides are in elements (not bytes) and must be
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
} kvq_host_info;
#define KVQ_HOST_INFO_SIZE KVQ_STRUCT_SIZE(kvq_host_info, num_threads)

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

typedef struct kvq_backend_info {
  uint64_t struct_size;
  const char* name; /* passed as kvq_layer_config.backend */
  const char* description;
  int64_t num_kv_modes;
  const kvq_kv_mode_info* const* kv_modes;
  uint32_t attention_states; /* bit (1u << KVQ_ATTN_x) set for each state forward accepts */
  uint32_t reserved;
} kvq_backend_info;
#define KVQ_BACKEND_INFO_SIZE KVQ_STRUCT_SIZE(kvq_backend_info, reserved)

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
 * "attention"). The key is unique within a plugin. */
typedef struct kvq_scheme_info {
  uint64_t struct_size;
  const char* quant_type;
  const char* layer_type;
  const char* description;
  uint8_t supported; /* 0: known but not built; apply_scheme answers UNSUPPORTED */
  uint8_t reserved[7];
  int64_t num_name_rules;
  const kvq_name_rule* const* name_rules;
} kvq_scheme_info;
#define KVQ_SCHEME_INFO_SIZE KVQ_STRUCT_SIZE(kvq_scheme_info, name_rules)

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
} kvq_plugin_info;
#define KVQ_PLUGIN_INFO_SIZE KVQ_STRUCT_SIZE(kvq_plugin_info, schemes)

/* ------------------------------------------------------------------ layers */

/* Describes one attention layer (this tensor-parallel rank's share). Copied by
 * the plugin. `options` is a flat array of 2*num_options strings,
 * key0, value0, key1, value1, ...; unknown keys are an error. */
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
 * [num_blocks, bytes_per_block], contiguous, aligned as the geometry says. */

typedef struct kvq_cache_write_args {
  uint64_t struct_size;
  const kvq_tensor* key;          /* [T, num_kv_heads, head_size], model dtype */
  const kvq_tensor* value;        /* [T, num_kv_heads, head_size_v], model dtype; NULL for keys-only layouts */
  const kvq_tensor* slot_mapping; /* [T] I64; slot = block * block_size + row; < 0 = skip */
  const kvq_tensor* kv_cache;     /* U8 [num_blocks, bytes_per_block] */
  int64_t num_tokens;             /* rows to write: the first num_tokens; 0 = all T */
} kvq_cache_write_args;
#define KVQ_CACHE_WRITE_ARGS_SIZE KVQ_STRUCT_SIZE(kvq_cache_write_args, num_tokens)

/* One forward batch. S sequences, T = query_start_loc[S] query tokens.
 * Sequence s owns query rows [query_start_loc[s], query_start_loc[s+1]); its
 * seq_lens[s] keys (context + new tokens) live in the blocks
 * block_table[s][0..]; query i of the chunk is at absolute position
 * ctx + i with ctx = seq_len - query_len and sees keys j <= ctx + i
 * (causal, aligned bottom-right). GQA: query head h reads KV head
 * h / (num_heads / num_kv_heads). The new tokens' K/V must have been written
 * with cache_write before forward. */
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
} kvq_forward_args;
#define KVQ_FORWARD_ARGS_SIZE KVQ_STRUCT_SIZE(kvq_forward_args, head_weights)

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
} kvq_param_info;
#define KVQ_PARAM_INFO_SIZE KVQ_STRUCT_SIZE(kvq_param_info, reserved)

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
} kvq_plugin_api;
#define KVQ_PLUGIN_API_SIZE KVQ_STRUCT_SIZE(kvq_plugin_api, select_scheme)

/* The exported entry point. Returns a static table; never NULL; no side
 * effects, so it is safe to call before anything else. */
typedef const kvq_plugin_api* (*kvq_plugin_entry_fn)(void);

/* ------------------------------------------------------- frozen v1.0 sizes */
/* The v1.0 sizes on LP64 targets. A change here is an ABI break. The field
 * offsets are pinned in tests/abi/abi_layout_test.c. */
KVQ_STATIC_ASSERT(sizeof(void*) == 8, "kvq ABI v1 is defined for 64-bit targets");
KVQ_STATIC_ASSERT(KVQ_TENSOR_SIZE == 160, "kvq_tensor v1.0 size");
KVQ_STATIC_ASSERT(KVQ_HOST_INFO_SIZE == 40, "kvq_host_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_PROBE_RESULT_SIZE == 32, "kvq_probe_result v1.0 size");
KVQ_STATIC_ASSERT(KVQ_KV_MODE_INFO_SIZE == 32, "kvq_kv_mode_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_BACKEND_INFO_SIZE == 48, "kvq_backend_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_NAME_RULE_SIZE == 24, "kvq_name_rule v1.0 size");
KVQ_STATIC_ASSERT(KVQ_SCHEME_INFO_SIZE == 56, "kvq_scheme_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_PLUGIN_INFO_SIZE == 88, "kvq_plugin_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_LAYER_CONFIG_SIZE == 128, "kvq_layer_config v1.0 size");
KVQ_STATIC_ASSERT(KVQ_LAYER_INFO_SIZE == 48, "kvq_layer_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_CACHE_GEOMETRY_SIZE == 72, "kvq_cache_geometry v1.0 size");
KVQ_STATIC_ASSERT(KVQ_CACHE_WRITE_ARGS_SIZE == 48, "kvq_cache_write_args v1.0 size");
KVQ_STATIC_ASSERT(KVQ_FORWARD_ARGS_SIZE == 104, "kvq_forward_args v1.0 size");
KVQ_STATIC_ASSERT(KVQ_SCHEME_ARGS_SIZE == 40, "kvq_scheme_args v1.0 size");
KVQ_STATIC_ASSERT(KVQ_PARAM_INFO_SIZE == 104, "kvq_param_info v1.0 size");
KVQ_STATIC_ASSERT(KVQ_PLUGIN_API_SIZE == 192, "kvq_plugin_api v1.0 size");

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVQ_ABI_H */
