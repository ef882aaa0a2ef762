/*
 * minimal_plugin.c — a complete kvq plugin in one C11 file.
 *
 * This is the example for a plugin author who has nothing but kvq_abi.h. It
 * implements one attention backend, "example", with one KV-cache mode,
 * "float32": the cache stores K and V as plain float32 and attention is
 * computed straight from it in float64. There is no quantization, no SIMD and
 * no threading, so every line is about the contract:
 *
 *   - exactly one exported symbol, kvq_plugin_entry, returning a const table;
 *   - version negotiation as the first call;
 *   - struct_size checks on every struct that crosses the boundary;
 *   - errors as heap-allocated values, never abort/assert/exit;
 *   - validation of everything before touching host memory;
 *   - logging only through the host's callback, never stdout/stderr;
 *   - no global mutable state (two hosts in one process cannot interfere).
 *
 * Build it with the kvq CMake package (see CMakeLists.txt next to this file):
 *   find_package(kvq REQUIRED)
 *   kvq_add_plugin(kvq_example SOURCES minimal_plugin.c)
 * kvq_add_plugin hides every symbol except kvq_plugin_entry.
 */
#include <kvq_abi.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The only symbol this library exports. The build uses -fvisibility=hidden
 * and a version script; this attribute opts the entry point back in. */
#define EXAMPLE_EXPORT __attribute__((visibility("default")))

/* This plugin implements ABI minor 0; a host that knows a newer minor gets 0
 * back from negotiate and must not use anything newer. */
#define EXAMPLE_ABI_MINOR 0

/* The v1.0 size of a struct that grew in a later minor: the least a caller
 * sends and all this plugin reads or writes. Headers from 1.1 on name it
 * <NAME>_SIZE_1_0 (their <NAME>_SIZE is the larger, current size); in the
 * 1.0 header <NAME>_SIZE is the v1.0 size. So the plugin builds against
 * either header and still accepts every 1.x host. */
#if KVQ_ABI_MINOR >= 1
#define EXAMPLE_V1_0_SIZE(name) name##_SIZE_1_0
#else
#define EXAMPLE_V1_0_SIZE(name) name##_SIZE
#endif

/* Sanity limits on layer geometry. They keep every size computation below
 * far away from int64 overflow, so no multiplication needs its own check. */
#define EXAMPLE_MAX_HEADS 4096
#define EXAMPLE_MAX_HEAD_SIZE 4096
#define EXAMPLE_MAX_BLOCK_SIZE 65536

/* The cache buffer alignment we ask the host for (a cache line). */
#define EXAMPLE_CACHE_ALIGNMENT 64

/* ================================================================ errors */

/* kvq_error is opaque to the host; each plugin defines it. The message is
 * stored inline, so one free() releases everything and the message lives
 * exactly as long as the error. snprintf truncates safely if a message is
 * ever longer than the buffer. */
struct kvq_error {
  int32_t code;
  char message[512];
};

/* Returned when malloc fails while building an error. It is never written
 * (so it is not mutable global state) and error_destroy knows not to free
 * it; the const is cast away only because the api returns kvq_error*. */
static const kvq_error oom_error = {KVQ_ERR_OUT_OF_MEMORY, "kvq example: out of memory"};
#define OOM_ERROR ((kvq_error*)&oom_error)

/* Builds an error with a printf-style message. Every failing path of every
 * function goes through here, so the format attribute lets the compiler
 * check each message against its arguments. */
static kvq_error* make_error(int32_t code, const char* format, ...)
    __attribute__((format(printf, 2, 3)));
static kvq_error* make_error(int32_t code, const char* format, ...) {
  kvq_error* error = malloc(sizeof *error);
  if (error == NULL) return OOM_ERROR;
  error->code = code;
  va_list args;
  va_start(args, format);
  vsnprintf(error->message, sizeof error->message, format, args);
  va_end(args);
  return error;
}

/* The api's error accessors. All three accept NULL, as the header demands. */
static int32_t error_code(const kvq_error* error) {
  return error ? error->code : 0;
}

static const char* error_message(const kvq_error* error) {
  return error ? error->message : "";
}

static void error_destroy(kvq_error* error) {
  if (error != OOM_ERROR) free(error); /* free(NULL) is a no-op */
}

/* ============================================================== instance */

/* One negotiated session. Everything the host told us at negotiation lives
 * here, including the log callback: there is no global logger. The struct is
 * never written after negotiate, which is what makes the instance functions
 * thread-safe without locks. */
struct kvq_instance {
  uint32_t abi_minor; /* min(host minor, EXAMPLE_ABI_MINOR) */
  kvq_log_fn log;     /* may be NULL */
  void* log_user_data;
  int32_t log_level; /* lowest level the host wants */
};

/* Logs through the host's callback, if it gave one and wants this level.
 * The message is formatted into a stack buffer; it only has to live during
 * the callback. */
static void log_message(const kvq_instance* instance, int32_t level, const char* format, ...)
    __attribute__((format(printf, 3, 4)));
static void log_message(const kvq_instance* instance, int32_t level, const char* format, ...) {
  if (instance == NULL || instance->log == NULL || level < instance->log_level) return;
  char buffer[512];
  va_list args;
  va_start(args, format);
  vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  instance->log(instance->log_user_data, level, buffer);
}

/* A function rather than an inline ?: so the compiler does not warn about
 * "unsigned < 0" while EXAMPLE_ABI_MINOR is 0. */
static uint32_t min_u32(uint32_t a, uint32_t b) {
  return a < b ? a : b;
}

/* negotiate: always the first call. The host says which major it speaks and
 * the highest minor it knows; we refuse another major and answer with the
 * minor both sides understand. */
static kvq_error* negotiate(const kvq_host_info* host, kvq_instance** out) {
  if (out == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "negotiate: out is NULL");
  *out = NULL; /* a failed call never leaves a dangling pointer behind */
  if (host == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "negotiate: host is NULL");
  /* struct_size and abi_major are frozen across all majors, so a host of
   * any major can be told about the mismatch, as long as it sent them. */
  if (host->struct_size < KVQ_STRUCT_SIZE(kvq_host_info, abi_major))
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "negotiate: host_info.struct_size %llu is too small",
                      (unsigned long long)host->struct_size);
  if (host->abi_major != KVQ_ABI_MAJOR)
    return make_error(KVQ_ERR_VERSION_MISMATCH,
                      "negotiate: host speaks kvq ABI major %u, this plugin speaks major %d",
                      host->abi_major, KVQ_ABI_MAJOR);
  /* Same major: now the whole v1.0 struct must be there (a smaller struct
   * than the v1.0 one is malformed; a larger one has a tail we ignore). */
  if (host->struct_size < EXAMPLE_V1_0_SIZE(KVQ_HOST_INFO))
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "negotiate: host_info.struct_size %llu is smaller than the v1.0 size %zu",
                      (unsigned long long)host->struct_size,
                      (size_t)EXAMPLE_V1_0_SIZE(KVQ_HOST_INFO));

  kvq_instance* instance = malloc(sizeof *instance);
  if (instance == NULL) return OOM_ERROR;
  /* Never require an exact minor: answer with the smaller of the two. */
  instance->abi_minor = min_u32(host->abi_minor, EXAMPLE_ABI_MINOR);
  instance->log = host->log;
  instance->log_user_data = host->log_user_data;
  instance->log_level = host->log_level == 0 ? KVQ_LOG_INFO : host->log_level;
  /* num_threads is ignored: this plugin is single-threaded. */
  log_message(instance, KVQ_LOG_DEBUG, "kvq example: negotiated ABI %d.%u", KVQ_ABI_MAJOR,
              instance->abi_minor);
  *out = instance;
  return NULL;
}

static void instance_destroy(kvq_instance* instance) {
  free(instance);
}

/* ========================================================== capabilities */

/* Everything get_info returns is static and const: it lives longer than any
 * instance, which is what the header requires ("as long as the instance"). */
static const kvq_kv_mode_info mode_float32 = {
    .struct_size = KVQ_KV_MODE_INFO_SIZE,
    .name = "float32",
    .description = "K and V stored as float32; model dtype float32 only",
    .element_dtype = KVQ_DTYPE_F32,
    .supported = 1,
    .per_token_head = 0,
    .needs_scheme = 0,
    .reserved = 0,
};
static const kvq_kv_mode_info* const example_modes[] = {&mode_float32};

static const kvq_backend_info backend_example = {
    .struct_size = EXAMPLE_V1_0_SIZE(KVQ_BACKEND_INFO), /* a 1.0 record: no layer options */
    .name = "example",
    .description = "minimal reference backend: float32 KV cache, float64 attention",
    .num_kv_modes = 1,
    .kv_modes = example_modes,
    /* Unified attention reads everything from the cache, so every state works. */
    .attention_states = (1u << KVQ_ATTN_PREFILL_NO_CACHE) | (1u << KVQ_ATTN_PREFILL_CACHE_HIT) |
                        (1u << KVQ_ATTN_DECODE_ONLY) | (1u << KVQ_ATTN_CHUNKED_PREFILL) |
                        (1u << KVQ_ATTN_SPEC_DECODING),
};
static const kvq_backend_info* const example_backends[] = {&backend_example};

/* Out-parameters: the host sets struct_size to the size it compiled. We
 * build the answer in a full local struct and copy only the v1.0 fields
 * (after struct_size, which stays the host's) into the host's struct. The
 * host's size was checked to be at least the v1.0 size, so we never write a
 * byte past it, and a newer host's unknown tail is left untouched. */
static void copy_out(void* out, const void* filled, size_t v1_size) {
  memcpy((char*)out + sizeof(uint64_t), (const char*)filled + sizeof(uint64_t),
         v1_size - sizeof(uint64_t));
}

/* Shared check for every out-struct: present and at least v1.0 sized. */
static kvq_error* check_out(const void* out, size_t v1_size, const char* what) {
  if (out == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "%s: out is NULL", what);
  uint64_t size;
  memcpy(&size, out, sizeof size); /* struct_size is always the first field */
  if (size < v1_size)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "%s: struct_size %llu is smaller than the v1.0 size %zu", what,
                      (unsigned long long)size, v1_size);
  return NULL;
}

/* probe: may be called before negotiate, so it needs no instance. This
 * plugin is portable C and runs on every CPU. */
static kvq_error* probe(kvq_probe_result* out) {
  kvq_error* error = check_out(out, KVQ_PROBE_RESULT_SIZE, "probe");
  if (error) return error;
  kvq_probe_result result;
  memset(&result, 0, sizeof result); /* zero the padding too: no stack bytes leak */
  result.can_run = 1;
  result.reason = "";
  result.simd_level = "scalar";
  copy_out(out, &result, KVQ_PROBE_RESULT_SIZE);
  return NULL;
}

static kvq_error* get_info(const kvq_instance* instance, kvq_plugin_info* out) {
  if (instance == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "get_info: instance is NULL");
  kvq_error* error = check_out(out, EXAMPLE_V1_0_SIZE(KVQ_PLUGIN_INFO), "get_info");
  if (error) return error;
  kvq_plugin_info info;
  memset(&info, 0, sizeof info);
  info.name = "kvq_example";
  info.version = "0.1.0";
  info.vendor = "kvq examples";
  info.abi_major = KVQ_ABI_MAJOR;
  info.abi_minor = instance->abi_minor; /* the negotiated one, not ours */
  info.simd_level = "scalar";
  info.cpu_features = "";
  info.num_backends = 1;
  info.backends = example_backends;
  info.num_schemes = 0; /* this plugin publishes no quantization schemes */
  info.schemes = NULL;
  copy_out(out, &info, EXAMPLE_V1_0_SIZE(KVQ_PLUGIN_INFO));
  return NULL;
}

/* ================================================================ layers */

/* One attention layer: a copy of the config values we need (the host's
 * config is only borrowed for the call) plus the derived cache geometry. */
struct kvq_layer {
  const kvq_instance* instance; /* for logging */
  int64_t num_heads;
  int64_t num_kv_heads;
  int64_t head_size;
  int64_t head_size_v;
  int64_t block_size;
  double softmax_scale;
  int64_t sliding_window;
  double softcap;
  int64_t row_bytes;       /* bytes of one (block, K|V, slot, head) row */
  int64_t bytes_per_block; /* 2 * block_size * num_kv_heads * row_bytes */
};

static kvq_error* layer_create(kvq_instance* instance, const kvq_layer_config* config,
                               kvq_layer** out) {
  if (out == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: out is NULL");
  *out = NULL;
  if (instance == NULL)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: instance is NULL");
  if (config == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: config is NULL");
  if (config->struct_size < KVQ_LAYER_CONFIG_SIZE)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "layer_create: config.struct_size %llu is smaller than the v1.0 size %zu",
                      (unsigned long long)config->struct_size, (size_t)KVQ_LAYER_CONFIG_SIZE);

  /* Which backend and mode. Unknown backend = NOT_FOUND, unknown mode
   * string = INVALID_ARGUMENT, as the header specifies. */
  if (config->backend == NULL)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: backend is NULL");
  if (strcmp(config->backend, backend_example.name) != 0)
    return make_error(KVQ_ERR_NOT_FOUND,
                      "layer_create: unknown backend \"%s\" (this plugin has \"%s\")",
                      config->backend, backend_example.name);
  if (config->kv_cache_dtype == NULL)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: kv_cache_dtype is NULL");
  if (strcmp(config->kv_cache_dtype, mode_float32.name) != 0)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "layer_create: unknown kv_cache_dtype \"%s\" for backend \"example\" "
                      "(known: \"float32\")",
                      config->kv_cache_dtype);

  /* Model dtype: F16/BF16 are valid ABI values we did not build. */
  if (config->model_dtype == KVQ_DTYPE_F16 || config->model_dtype == KVQ_DTYPE_BF16)
    return make_error(KVQ_ERR_UNSUPPORTED,
                      "layer_create: mode \"float32\" supports model dtype float32 only (got %d)",
                      config->model_dtype);
  if (config->model_dtype != KVQ_DTYPE_F32)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "layer_create: model_dtype %d is not F32, F16 or BF16", config->model_dtype);

  /* Geometry. */
  if (config->num_heads <= 0 || config->num_heads > EXAMPLE_MAX_HEADS ||
      config->num_kv_heads <= 0 || config->num_kv_heads > EXAMPLE_MAX_HEADS)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "layer_create: num_heads %lld / num_kv_heads %lld must be in [1, %d]",
                      (long long)config->num_heads, (long long)config->num_kv_heads,
                      EXAMPLE_MAX_HEADS);
  if (config->num_heads % config->num_kv_heads != 0)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "layer_create: num_heads %lld is not a multiple of num_kv_heads %lld",
                      (long long)config->num_heads, (long long)config->num_kv_heads);
  if (config->head_size <= 0 || config->head_size > EXAMPLE_MAX_HEAD_SIZE ||
      config->head_size_v < 0 || config->head_size_v > EXAMPLE_MAX_HEAD_SIZE)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "layer_create: head_size %lld / head_size_v %lld out of range",
                      (long long)config->head_size, (long long)config->head_size_v);
  if (config->block_size <= 0 || config->block_size > EXAMPLE_MAX_BLOCK_SIZE)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: block_size %lld must be in [1, %d]",
                      (long long)config->block_size, EXAMPLE_MAX_BLOCK_SIZE);
  /* !(x >= 0) also catches NaN. */
  if (!(config->softmax_scale >= 0) || isinf(config->softmax_scale))
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: softmax_scale %g is invalid",
                      config->softmax_scale);
  if (config->sliding_window < 0)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: sliding_window %lld is negative",
                      (long long)config->sliding_window);
  if (!(config->softcap >= 0) || isinf(config->softcap))
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: softcap %g is invalid",
                      config->softcap);
  /* Tensor parallelism does not change anything here (the config already
   * describes this rank's share), but a nonsensical position is an error. */
  int32_t tp_size = config->tp_size == 0 ? 1 : config->tp_size;
  if (tp_size < 0 || config->tp_rank < 0 || config->tp_rank >= tp_size)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: tp_rank %d / tp_size %d invalid",
                      config->tp_rank, config->tp_size);
  /* Options: we know no keys, and unknown keys are an error. */
  if (config->num_options < 0 || (config->num_options > 0 && config->options == NULL))
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: malformed options (%lld)",
                      (long long)config->num_options);
  if (config->num_options > 0)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "layer_create: unknown option \"%s\" (backend \"example\" has none)",
                      config->options[0] ? config->options[0] : "(null)");

  kvq_layer* layer = malloc(sizeof *layer);
  if (layer == NULL) return OOM_ERROR;
  layer->instance = instance;
  layer->num_heads = config->num_heads;
  layer->num_kv_heads = config->num_kv_heads;
  layer->head_size = config->head_size;
  layer->head_size_v = config->head_size_v == 0 ? config->head_size : config->head_size_v;
  layer->block_size = config->block_size;
  layer->softmax_scale =
      config->softmax_scale == 0 ? 1.0 / sqrt((double)config->head_size) : config->softmax_scale;
  layer->sliding_window = config->sliding_window;
  layer->softcap = config->softcap;
  /* One row holds head_size (K) or head_size_v (V) floats; K and V rows
   * share one row size, so take the larger. */
  int64_t widest = layer->head_size > layer->head_size_v ? layer->head_size : layer->head_size_v;
  layer->row_bytes = widest * (int64_t)sizeof(float);
  layer->bytes_per_block = 2 * layer->block_size * layer->num_kv_heads * layer->row_bytes;
  log_message(instance, KVQ_LOG_DEBUG,
              "kvq example: layer \"%s\" heads %lld/%lld head_size %lld block %lld",
              config->layer_name ? config->layer_name : "", (long long)layer->num_heads,
              (long long)layer->num_kv_heads, (long long)layer->head_size,
              (long long)layer->block_size);
  *out = layer;
  return NULL;
}

static void layer_destroy(kvq_layer* layer) {
  free(layer);
}

static kvq_error* layer_info(const kvq_layer* layer, kvq_layer_info* out) {
  if (layer == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_info: layer is NULL");
  kvq_error* error = check_out(out, KVQ_LAYER_INFO_SIZE, "layer_info");
  if (error) return error;
  kvq_layer_info info;
  memset(&info, 0, sizeof info);
  info.impl_name = "example_float32"; /* string literals outlive the layer */
  info.kv_cache_dtype = mode_float32.name;
  info.scheme = ""; /* no scheme can ever be applied */
  info.element_dtype = KVQ_DTYPE_F32;
  info.num_params = 0;
  copy_out(out, &info, KVQ_LAYER_INFO_SIZE);
  return NULL;
}

static kvq_error* cache_geometry(const kvq_layer* layer, kvq_cache_geometry* out) {
  if (layer == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "cache_geometry: layer is NULL");
  kvq_error* error = check_out(out, KVQ_CACHE_GEOMETRY_SIZE, "cache_geometry");
  if (error) return error;
  kvq_cache_geometry geometry;
  memset(&geometry, 0, sizeof geometry);
  geometry.layout = KVQ_CACHE_LAYOUT_BLOCK_KV_SLOT_HEAD;
  geometry.element_dtype = KVQ_DTYPE_F32;
  geometry.block_size = layer->block_size;
  geometry.num_kv_heads = layer->num_kv_heads;
  geometry.head_size = layer->head_size;
  geometry.head_size_v = layer->head_size_v;
  geometry.row_bytes = layer->row_bytes;
  geometry.bytes_per_block = layer->bytes_per_block;
  geometry.alignment = EXAMPLE_CACHE_ALIGNMENT;
  copy_out(out, &geometry, KVQ_CACHE_GEOMETRY_SIZE);
  return NULL;
}

/* =============================================================== tensors */

/* Checks a borrowed tensor descriptor: size, device, dtype, rank and (when
 * `shape` is given; -1 = any extent) the exact shape. Strides are honoured
 * by the element accessors below, so any stride layout is accepted. */
static kvq_error* check_tensor(const kvq_tensor* t, const char* what, int32_t dtype, int32_t ndim,
                               const int64_t* shape) {
  if (t == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "%s is NULL", what);
  if (t->struct_size < KVQ_TENSOR_SIZE)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "%s: struct_size %llu is smaller than the v1.0 size %zu", what,
                      (unsigned long long)t->struct_size, (size_t)KVQ_TENSOR_SIZE);
  if (t->ndim < 0 || t->ndim > KVQ_MAX_DIMS)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "%s: ndim %d is outside [0, %d]", what, t->ndim,
                      KVQ_MAX_DIMS);
  for (int32_t i = 0; i < t->ndim; ++i)
    if (t->shape[i] < 0)
      return make_error(KVQ_ERR_INVALID_ARGUMENT, "%s: shape[%d] = %lld is negative", what, i,
                        (long long)t->shape[i]);
  /* Device 0 is not a device at all; any other value is some device we
   * were not built for (only host memory here). */
  if (t->device_type != KVQ_DEVICE_CPU)
    return make_error(t->device_type == 0 ? KVQ_ERR_INVALID_ARGUMENT : KVQ_ERR_UNSUPPORTED,
                      "%s: device_type %d is not KVQ_DEVICE_CPU", what, t->device_type);
  if (t->dtype != dtype)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "%s: dtype %d, expected %d", what, t->dtype, dtype);
  if (t->ndim != ndim)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "%s: ndim %d, expected %d", what, t->ndim, ndim);
  for (int32_t i = 0; shape != NULL && i < ndim; ++i)
    if (shape[i] >= 0 && t->shape[i] != shape[i])
      return make_error(KVQ_ERR_INVALID_ARGUMENT, "%s: shape[%d] = %lld, expected %lld", what, i,
                        (long long)t->shape[i], (long long)shape[i]);
  return NULL;
}

/* Number of elements; 0 when any extent is 0. */
static int64_t tensor_elements(const kvq_tensor* t) {
  int64_t n = 1;
  for (int32_t i = 0; i < t->ndim; ++i) n *= t->shape[i];
  return n;
}

/* Data must be present unless the tensor is empty. */
static kvq_error* check_data(const kvq_tensor* t, const char* what) {
  if (t->data == NULL && tensor_elements(t) > 0)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "%s: data is NULL", what);
  return NULL;
}

/* Element offsets honour the host's strides (in elements, per dimension). */
static int64_t at1(const kvq_tensor* t, int64_t i) {
  return i * t->strides[0];
}
static int64_t at2(const kvq_tensor* t, int64_t i, int64_t j) {
  return i * t->strides[0] + j * t->strides[1];
}
static int64_t at3(const kvq_tensor* t, int64_t i, int64_t j, int64_t k) {
  return i * t->strides[0] + j * t->strides[1] + k * t->strides[2];
}
static float* f32(const kvq_tensor* t) {
  return (float*)t->data;
}
static const int32_t* i32(const kvq_tensor* t) {
  return (const int32_t*)t->data;
}
static const int64_t* i64(const kvq_tensor* t) {
  return (const int64_t*)t->data;
}

/* The KV cache is always a contiguous U8 [num_blocks, bytes_per_block]
 * tensor (the header says so), aligned as our geometry asked. */
static kvq_error* check_cache(const kvq_layer* layer, const kvq_tensor* cache, const char* what,
                              int need_data) {
  const int64_t shape[2] = {-1, layer->bytes_per_block};
  kvq_error* error = check_tensor(cache, what, KVQ_DTYPE_U8, 2, shape);
  if (error) return error;
  if ((cache->shape[0] > 1 && cache->strides[0] != layer->bytes_per_block) ||
      (cache->shape[1] > 1 && cache->strides[1] != 1))
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "%s: the KV cache must be contiguous", what);
  if (!need_data) return NULL;
  error = check_data(cache, what);
  if (error) return error;
  if ((uintptr_t)cache->data % EXAMPLE_CACHE_ALIGNMENT != 0)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "%s: data is not %d-byte aligned", what,
                      EXAMPLE_CACHE_ALIGNMENT);
  return NULL;
}

/* The float row of (block, K=0|V=1, slot in block, kv head) in the cache:
 * [num_blocks][2][block_size][num_kv_heads][row_bytes]. */
static float* cache_row(const kvq_layer* layer, const kvq_tensor* cache, int64_t block, int kv,
                        int64_t row, int64_t head) {
  int64_t offset = block * layer->bytes_per_block +
                   ((kv * layer->block_size + row) * layer->num_kv_heads + head) * layer->row_bytes;
  return (float*)((unsigned char*)cache->data + offset);
}

/* ============================================================= KV cache */

/* A fresh cache is all zeros (there are no inline scales in this mode). */
static kvq_error* cache_init(kvq_layer* layer, const kvq_tensor* kv_cache) {
  if (layer == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "cache_init: layer is NULL");
  kvq_error* error = check_cache(layer, kv_cache, "cache_init: kv_cache", 1);
  if (error) return error;
  memset(kv_cache->data, 0, (size_t)(kv_cache->shape[0] * layer->bytes_per_block));
  return NULL;
}

/* reshape_and_cache: token t's K and V go to slot slot_mapping[t]. */
static kvq_error* cache_write(kvq_layer* layer, const kvq_cache_write_args* args) {
  if (layer == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "cache_write: layer is NULL");
  if (args == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "cache_write: args is NULL");
  if (args->struct_size < EXAMPLE_V1_0_SIZE(KVQ_CACHE_WRITE_ARGS))
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "cache_write: args.struct_size %llu is smaller than the v1.0 size %zu",
                      (unsigned long long)args->struct_size,
                      (size_t)EXAMPLE_V1_0_SIZE(KVQ_CACHE_WRITE_ARGS));

  /* Validate everything first; the write loop below cannot fail, so on any
   * error the cache is exactly as it was. */
  kvq_error* error =
      check_tensor(args->slot_mapping, "cache_write: slot_mapping", KVQ_DTYPE_I64, 1, NULL);
  if (error) return error;
  const int64_t T = args->slot_mapping->shape[0];
  const int64_t key_shape[3] = {T, layer->num_kv_heads, layer->head_size};
  const int64_t value_shape[3] = {T, layer->num_kv_heads, layer->head_size_v};
  if ((error = check_tensor(args->key, "cache_write: key", KVQ_DTYPE_F32, 3, key_shape)) ||
      (error = check_tensor(args->value, "cache_write: value", KVQ_DTYPE_F32, 3, value_shape)) ||
      (error = check_cache(layer, args->kv_cache, "cache_write: kv_cache", 1)))
    return error;
  if (args->num_tokens < 0 || args->num_tokens > T)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "cache_write: num_tokens %lld outside [0, %lld]",
                      (long long)args->num_tokens, (long long)T);
  const int64_t n = args->num_tokens == 0 ? T : args->num_tokens;
  if (n == 0) return NULL;
  if ((error = check_data(args->key, "cache_write: key")) ||
      (error = check_data(args->value, "cache_write: value")) ||
      (error = check_data(args->slot_mapping, "cache_write: slot_mapping")))
    return error;
  /* slot / block_size >= num_blocks is slot >= num_blocks * block_size
   * without the multiplication (which a huge num_blocks could overflow). */
  const int64_t num_blocks = args->kv_cache->shape[0];
  for (int64_t t = 0; t < n; ++t) {
    int64_t slot = i64(args->slot_mapping)[at1(args->slot_mapping, t)];
    if (slot >= 0 && slot / layer->block_size >= num_blocks)
      return make_error(KVQ_ERR_OUT_OF_RANGE,
                        "cache_write: token %lld has slot %lld, the cache has %lld blocks of %lld",
                        (long long)t, (long long)slot, (long long)num_blocks,
                        (long long)layer->block_size);
  }

  for (int64_t t = 0; t < n; ++t) {
    int64_t slot = i64(args->slot_mapping)[at1(args->slot_mapping, t)];
    if (slot < 0) continue; /* a padding token */
    int64_t block = slot / layer->block_size, row = slot % layer->block_size;
    for (int64_t h = 0; h < layer->num_kv_heads; ++h) {
      float* k = cache_row(layer, args->kv_cache, block, 0, row, h);
      float* v = cache_row(layer, args->kv_cache, block, 1, row, h);
      for (int64_t d = 0; d < layer->head_size; ++d) k[d] = f32(args->key)[at3(args->key, t, h, d)];
      for (int64_t d = 0; d < layer->head_size_v; ++d)
        v[d] = f32(args->value)[at3(args->value, t, h, d)];
    }
  }
  return NULL;
}

/* ============================================================== attention */

/* The checks shared by supports() and forward(), so the two can never
 * disagree. `need_data`: forward passes 1 and requires data pointers;
 * supports passes 0, reads the batch description (query_start_loc,
 * seq_lens, block_table) only where the host gave it, and touches nothing
 * else. */
static kvq_error* check_forward(const kvq_layer* layer, const kvq_forward_args* args,
                                int need_data) {
  if (layer == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "forward: layer is NULL");
  if (args == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "forward: args is NULL");
  if (args->struct_size < EXAMPLE_V1_0_SIZE(KVQ_FORWARD_ARGS))
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "forward: args.struct_size %llu is smaller than the v1.0 size %zu",
                      (unsigned long long)args->struct_size,
                      (size_t)EXAMPLE_V1_0_SIZE(KVQ_FORWARD_ARGS));
  /* Unified attention: every valid state is handled the same way. */
  if (args->attention_state < KVQ_ATTN_PREFILL_NO_CACHE ||
      args->attention_state > KVQ_ATTN_SPEC_DECODING)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "forward: attention_state %d is not a KVQ_ATTN_* value",
                      args->attention_state);

  /* Shapes and dtypes. */
  kvq_error* error =
      check_tensor(args->query_start_loc, "forward: query_start_loc", KVQ_DTYPE_I32, 1, NULL);
  if (error) return error;
  const int64_t S = args->query_start_loc->shape[0] - 1;
  if (S < 0)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "forward: query_start_loc needs at least one entry");
  const int64_t seq_shape[1] = {S};
  const int64_t table_shape[2] = {S, -1};
  if ((error = check_tensor(args->seq_lens, "forward: seq_lens", KVQ_DTYPE_I32, 1, seq_shape)) ||
      (error = check_tensor(args->block_table, "forward: block_table", KVQ_DTYPE_I32, 2,
                            table_shape)) ||
      (error = check_tensor(args->query, "forward: query", KVQ_DTYPE_F32, 3, NULL)))
    return error;
  const int64_t T = args->query->shape[0];
  const int64_t query_shape[3] = {T, layer->num_heads, layer->head_size};
  const int64_t key_shape[3] = {T, layer->num_kv_heads, layer->head_size};
  const int64_t value_shape[3] = {T, layer->num_kv_heads, layer->head_size_v};
  const int64_t output_shape[3] = {T, layer->num_heads, layer->head_size_v};
  if ((error = check_tensor(args->query, "forward: query", KVQ_DTYPE_F32, 3, query_shape)) ||
      (error = check_tensor(args->output, "forward: output", KVQ_DTYPE_F32, 3, output_shape)) ||
      (error = check_cache(layer, args->kv_cache, "forward: kv_cache", need_data)))
    return error;
  /* The batch's float K/V are optional; we attend from the cache (which
   * holds the very same float32 values), but if given they must fit. */
  if (args->key && (error = check_tensor(args->key, "forward: key", KVQ_DTYPE_F32, 3, key_shape)))
    return error;
  if (args->value &&
      (error = check_tensor(args->value, "forward: value", KVQ_DTYPE_F32, 3, value_shape)))
    return error;
  /* Well-formed, but not implemented by this example. */
  if (args->alibi_slopes)
    return make_error(KVQ_ERR_UNSUPPORTED, "forward: backend \"example\" does not implement ALiBi");
  if (args->sinks)
    return make_error(KVQ_ERR_UNSUPPORTED,
                      "forward: backend \"example\" does not implement attention sinks");

  if (need_data && ((error = check_data(args->query, "forward: query")) ||
                    (error = check_data(args->output, "forward: output")) ||
                    (error = check_data(args->query_start_loc, "forward: query_start_loc")) ||
                    (error = check_data(args->seq_lens, "forward: seq_lens")) ||
                    (error = check_data(args->block_table, "forward: block_table"))))
    return error;

  /* The batch description. supports() may be called without it. */
  const kvq_tensor* qsl = args->query_start_loc;
  const kvq_tensor* lens = args->seq_lens;
  const kvq_tensor* table = args->block_table;
  if (qsl->data != NULL) {
    if (i32(qsl)[at1(qsl, 0)] != 0)
      return make_error(KVQ_ERR_INVALID_ARGUMENT, "forward: query_start_loc[0] = %d, must be 0",
                        i32(qsl)[at1(qsl, 0)]);
    for (int64_t s = 0; s < S; ++s)
      if (i32(qsl)[at1(qsl, s + 1)] < i32(qsl)[at1(qsl, s)])
        return make_error(KVQ_ERR_INVALID_ARGUMENT,
                          "forward: query_start_loc decreases at sequence %lld", (long long)s);
    if (i32(qsl)[at1(qsl, S)] != T)
      return make_error(KVQ_ERR_INVALID_ARGUMENT,
                        "forward: query_start_loc[%lld] = %d but query has %lld tokens",
                        (long long)S, i32(qsl)[at1(qsl, S)], (long long)T);
  }
  const int64_t max_blocks = table->shape[1];
  const int64_t num_blocks = args->kv_cache->shape[0];
  for (int64_t s = 0; lens->data != NULL && s < S; ++s) {
    const int64_t seq_len = i32(lens)[at1(lens, s)];
    if (seq_len < 0)
      return make_error(KVQ_ERR_INVALID_ARGUMENT, "forward: seq_lens[%lld] = %lld is negative",
                        (long long)s, (long long)seq_len);
    if (qsl->data != NULL) {
      const int64_t query_len = i32(qsl)[at1(qsl, s + 1)] - i32(qsl)[at1(qsl, s)];
      if (query_len > seq_len)
        return make_error(KVQ_ERR_INVALID_ARGUMENT,
                          "forward: sequence %lld has %lld queries but only %lld keys",
                          (long long)s, (long long)query_len, (long long)seq_len);
    }
    /* Blocks the sequence needs; comparing block counts instead of
     * seq_len > max_blocks * block_size avoids overflow on a huge table. */
    const int64_t used = (seq_len + layer->block_size - 1) / layer->block_size;
    if (used > max_blocks)
      return make_error(KVQ_ERR_OUT_OF_RANGE,
                        "forward: seq_lens[%lld] = %lld exceeds block_table capacity %lld x %lld",
                        (long long)s, (long long)seq_len, (long long)max_blocks,
                        (long long)layer->block_size);
    /* Only the blocks the sequence uses are read, so only they must be
     * valid; the rest of the row is padding. */
    for (int64_t b = 0; table->data != NULL && b < used; ++b) {
      const int64_t block = i32(table)[at2(table, s, b)];
      if (block < 0 || block >= num_blocks)
        return make_error(KVQ_ERR_OUT_OF_RANGE,
                          "forward: block_table[%lld][%lld] = %lld, the cache has %lld blocks",
                          (long long)s, (long long)b, (long long)block, (long long)num_blocks);
    }
  }
  return NULL;
}

static kvq_error* supports(const kvq_layer* layer, const kvq_forward_args* args) {
  return check_forward(layer, args, 0);
}

/* Causal GQA attention, bottom-right aligned, straight from the cache.
 * Online softmax in float64: one pass over the keys, no score buffer. */
static kvq_error* forward(kvq_layer* layer, const kvq_forward_args* args) {
  kvq_error* error = check_forward(layer, args, 1);
  if (error) return error;
  const kvq_tensor* qsl = args->query_start_loc;
  const kvq_tensor* table = args->block_table;
  const kvq_tensor* q = args->query;
  const kvq_tensor* o = args->output;
  const int64_t S = qsl->shape[0] - 1;
  const int64_t group = layer->num_heads / layer->num_kv_heads; /* query heads per KV head */
  const int64_t D = layer->head_size, Dv = layer->head_size_v;

  double* acc = malloc((size_t)Dv * sizeof(double));
  if (acc == NULL) return OOM_ERROR;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t first = i32(qsl)[at1(qsl, s)];
    const int64_t query_len = i32(qsl)[at1(qsl, s + 1)] - first;
    const int64_t seq_len = i32(args->seq_lens)[at1(args->seq_lens, s)];
    const int64_t context = seq_len - query_len; /* keys cached before this chunk */
    for (int64_t i = 0; i < query_len; ++i) {
      const int64_t t = first + i;
      const int64_t pos = context + i; /* absolute position of this query */
      /* Causal: keys j <= pos. Sliding window: pos - j < window. */
      const int64_t lo = layer->sliding_window > 0 && pos - layer->sliding_window + 1 > 0
                             ? pos - layer->sliding_window + 1
                             : 0;
      for (int64_t h = 0; h < layer->num_heads; ++h) {
        const int64_t kv_head = h / group;
        double max_score = -INFINITY, denominator = 0.0;
        for (int64_t d = 0; d < Dv; ++d) acc[d] = 0.0;
        for (int64_t j = lo; j <= pos; ++j) {
          const int64_t block = i32(table)[at2(table, s, j / layer->block_size)];
          const int64_t row = j % layer->block_size;
          const float* k = cache_row(layer, args->kv_cache, block, 0, row, kv_head);
          const float* v = cache_row(layer, args->kv_cache, block, 1, row, kv_head);
          double score = 0.0;
          for (int64_t d = 0; d < D; ++d) score += (double)f32(q)[at3(q, t, h, d)] * k[d];
          score *= layer->softmax_scale;
          if (layer->softcap > 0) score = layer->softcap * tanh(score / layer->softcap);
          /* Rescale what we have so far when a new maximum appears. */
          if (score > max_score) {
            const double correction = exp(max_score - score); /* exp(-inf) = 0 on the first key */
            denominator *= correction;
            for (int64_t d = 0; d < Dv; ++d) acc[d] *= correction;
            max_score = score;
          }
          const double p = exp(score - max_score);
          denominator += p;
          for (int64_t d = 0; d < Dv; ++d) acc[d] += p * v[d];
        }
        /* pos >= 0 always (seq_len >= query_len was checked), so key pos is
         * visible and denominator >= 1. */
        for (int64_t d = 0; d < Dv; ++d) f32(o)[at3(o, t, h, d)] = (float)(acc[d] / denominator);
      }
    }
  }
  free(acc);
  return NULL;
}

/* ==================================================== schemes, parameters */

/* This plugin publishes no schemes and declares no parameters. Each entry
 * still validates its arguments and answers the exact code the header
 * specifies, because hosts and the conformance suite rely on them. */

static kvq_error* apply_scheme(kvq_layer* layer, const kvq_scheme_args* args) {
  if (layer == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "apply_scheme: layer is NULL");
  if (args == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "apply_scheme: args is NULL");
  if (args->struct_size < KVQ_SCHEME_ARGS_SIZE)
    return make_error(KVQ_ERR_INVALID_ARGUMENT,
                      "apply_scheme: args.struct_size %llu is smaller than the v1.0 size %zu",
                      (unsigned long long)args->struct_size, (size_t)KVQ_SCHEME_ARGS_SIZE);
  if (args->quant_type == NULL || args->layer_type == NULL)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "apply_scheme: quant_type/layer_type is NULL");
  return make_error(KVQ_ERR_NOT_FOUND, "apply_scheme: no scheme (\"%s\", \"%s\") in kvq_example",
                    args->quant_type, args->layer_type);
}

static kvq_error* scheme_apply(kvq_layer* layer) {
  if (layer == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "scheme_apply: layer is NULL");
  return make_error(KVQ_ERR_FAILED_PRECONDITION,
                    "scheme_apply: no scheme is applied to this layer");
}

static kvq_error* param_info(const kvq_layer* layer, int64_t index, kvq_param_info* out) {
  if (layer == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "param_info: layer is NULL");
  kvq_error* error = check_out(out, EXAMPLE_V1_0_SIZE(KVQ_PARAM_INFO), "param_info");
  if (error) return error;
  return make_error(KVQ_ERR_OUT_OF_RANGE, "param_info: index %lld, the layer has 0 parameters",
                    (long long)index);
}

static kvq_error* param_read(const kvq_layer* layer, const char* name, const kvq_tensor* dst) {
  if (layer == NULL || name == NULL || dst == NULL)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "param_read: layer, name or dst is NULL");
  return make_error(KVQ_ERR_NOT_FOUND, "param_read: no parameter \"%s\"", name);
}

static kvq_error* param_load(kvq_layer* layer, const char* name, const kvq_tensor* loaded,
                             int32_t tp_rank, int32_t tp_size) {
  (void)tp_rank;
  (void)tp_size;
  if (layer == NULL || name == NULL || loaded == NULL)
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "param_load: layer, name or loaded is NULL");
  return make_error(KVQ_ERR_NOT_FOUND, "param_load: no parameter \"%s\"", name);
}

/* Nothing to finalise; idempotent by construction. */
static kvq_error* process_weights(kvq_layer* layer) {
  if (layer == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "process_weights: layer is NULL");
  return NULL;
}

/* ============================================================ entry point */

/* The function table. It is const and static: kvq_plugin_entry has no side
 * effects and may be called any number of times. struct_size tells a host
 * built against a newer header which entries this table has. */
static const kvq_plugin_api example_api = {
    .struct_size = KVQ_PLUGIN_API_SIZE,
    .abi_major = KVQ_ABI_MAJOR,
    .abi_minor = EXAMPLE_ABI_MINOR,
    .negotiate = negotiate,
    .error_code = error_code,
    .error_message = error_message,
    .error_destroy = error_destroy,
    .instance_destroy = instance_destroy,
    .probe = probe,
    .get_info = get_info,
    .layer_create = layer_create,
    .layer_destroy = layer_destroy,
    .layer_info = layer_info,
    .cache_geometry = cache_geometry,
    .cache_init = cache_init,
    .cache_write = cache_write,
    .supports = supports,
    .forward = forward,
    .apply_scheme = apply_scheme,
    .scheme_apply = scheme_apply,
    .param_info = param_info,
    .param_read = param_read,
    .param_load = param_load,
    .process_weights = process_weights,
};

/* The one exported symbol. Its type is kvq_plugin_entry_fn; declaring it
 * first lets the compiler check that. */
EXAMPLE_EXPORT const kvq_plugin_api* kvq_plugin_entry(void);
const kvq_plugin_api* kvq_plugin_entry(void) {
  return &example_api;
}
