/* A test-only kvq plugin: just enough of ABI 1 for the host's loader and
 * engine tests. Built twice: STUB_ABI_MAJOR=1 and STUB_ABI_MAJOR=2 (a table
 * from a future major, which the host must refuse before calling anything).
 *
 * The major-1 stub negotiates, logs one line, publishes one backend "stub",
 * refuses layers whose kv_cache_dtype is "refuse" (UNSUPPORTED), and builds
 * layers that write zeros as attention output. Each layer's second forward
 * call fails with OUT_OF_RANGE, so the engine's step-failure path can be
 * tested. It has no probe and no layer_info (optional functions). */
#include <kvq_abi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef STUB_ABI_MAJOR
#error "define STUB_ABI_MAJOR"
#endif

struct kvq_error {
  int32_t code;
  char message[256];
};

struct kvq_instance {
  uint32_t minor;
};

static kvq_error* make_error(int32_t code, const char* message) {
  kvq_error* error = (kvq_error*)malloc(sizeof(kvq_error));
  if (error == NULL) return NULL; /* cannot report; the caller sees success */
  error->code = code;
  snprintf(error->message, sizeof error->message, "%s", message);
  return error;
}

static uint32_t min_u32(uint32_t a, uint32_t b) {
  return a < b ? a : b;
}

static int32_t stub_error_code(const kvq_error* error) {
  return error ? error->code : 0;
}
static const char* stub_error_message(const kvq_error* error) {
  return error ? error->message : "";
}
static void stub_error_destroy(kvq_error* error) {
  free(error);
}

static kvq_error* stub_negotiate(const kvq_host_info* host, kvq_instance** out) {
  if (host == NULL || out == NULL || host->struct_size < KVQ_HOST_INFO_SIZE) {
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "negotiate: bad arguments");
  }
  if (host->abi_major != STUB_ABI_MAJOR) {
    char message[128];
    snprintf(message, sizeof message, "stub speaks ABI major %d, host %u", STUB_ABI_MAJOR,
             host->abi_major);
    return make_error(KVQ_ERR_VERSION_MISMATCH, message);
  }
  kvq_instance* instance = (kvq_instance*)malloc(sizeof(kvq_instance));
  if (instance == NULL) return make_error(KVQ_ERR_OUT_OF_MEMORY, "negotiate: out of memory");
  instance->minor = min_u32(host->abi_minor, KVQ_ABI_MINOR);
  if (host->log != NULL) host->log(host->log_user_data, KVQ_LOG_INFO, "hello from the stub plugin");
  *out = instance;
  return NULL;
}

static void stub_instance_destroy(kvq_instance* instance) {
  free(instance);
}

static const kvq_kv_mode_info kMode = {
    KVQ_KV_MODE_INFO_SIZE, "bfloat16", "unquantized", 0, 1, 0, 0, 0};
static const kvq_kv_mode_info* const kModes[] = {&kMode};
static const kvq_backend_info kBackend = {
    KVQ_BACKEND_INFO_SIZE,           "stub", "refuses every layer", 1, kModes,
    1u << KVQ_ATTN_PREFILL_NO_CACHE, 0};
static const kvq_backend_info* const kBackends[] = {&kBackend};

static kvq_error* stub_get_info(const kvq_instance* instance, kvq_plugin_info* out) {
  if (instance == NULL || out == NULL || out->struct_size < KVQ_PLUGIN_INFO_SIZE) {
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "get_info: bad arguments");
  }
  out->name = "kvq_host_stub";
  out->version = "0.0.1";
  out->vendor = "kvq tests";
  out->abi_major = STUB_ABI_MAJOR;
  out->abi_minor = instance->minor;
  out->simd_level = "scalar";
  out->cpu_features = "";
  out->num_backends = 1;
  out->backends = kBackends;
  out->num_schemes = 0;
  out->schemes = NULL;
  return NULL;
}

struct kvq_layer {
  int64_t block_size;
  int64_t num_kv_heads;
  int64_t head_size;
  int64_t element_bytes;
  int64_t forward_calls;
};

static int64_t element_bytes(int32_t dtype) {
  switch (dtype) {
    case KVQ_DTYPE_F32: return 4;
    case KVQ_DTYPE_F16: return 2;
    case KVQ_DTYPE_BF16: return 2;
    default: return 0;
  }
}

static kvq_error* stub_layer_create(kvq_instance* instance, const kvq_layer_config* config,
                                    kvq_layer** out) {
  if (instance == NULL || config == NULL || out == NULL || config->kv_cache_dtype == NULL ||
      element_bytes(config->model_dtype) == 0) {
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "layer_create: bad arguments");
  }
  if (strcmp(config->kv_cache_dtype, "refuse") == 0) {
    return make_error(KVQ_ERR_UNSUPPORTED, "the stub refuses kv_cache_dtype 'refuse'");
  }
  kvq_layer* layer = (kvq_layer*)malloc(sizeof(kvq_layer));
  if (layer == NULL) return make_error(KVQ_ERR_OUT_OF_MEMORY, "layer_create: out of memory");
  layer->block_size = config->block_size;
  layer->num_kv_heads = config->num_kv_heads;
  layer->head_size = config->head_size;
  layer->element_bytes = element_bytes(config->model_dtype);
  layer->forward_calls = 0;
  *out = layer;
  return NULL;
}

static void stub_layer_destroy(kvq_layer* layer) {
  free(layer);
}

static kvq_error* stub_cache_geometry(const kvq_layer* layer, kvq_cache_geometry* out) {
  if (layer == NULL || out == NULL) return make_error(KVQ_ERR_INVALID_ARGUMENT, "bad arguments");
  out->layout = KVQ_CACHE_LAYOUT_BLOCK_KV_SLOT_HEAD;
  out->element_dtype = 0;
  out->block_size = layer->block_size;
  out->num_kv_heads = layer->num_kv_heads;
  out->head_size = layer->head_size;
  out->head_size_v = layer->head_size;
  out->row_bytes = layer->head_size * layer->element_bytes;
  out->bytes_per_block = 2 * layer->block_size * layer->num_kv_heads * out->row_bytes;
  out->alignment = 64;
  return NULL;
}

static kvq_error* stub_cache_init(kvq_layer* layer, const kvq_tensor* kv_cache) {
  (void)layer;
  (void)kv_cache;
  return NULL;
}

static kvq_error* stub_cache_write(kvq_layer* layer, const kvq_cache_write_args* args) {
  (void)layer;
  (void)args;
  return NULL;
}

static kvq_error* stub_forward(kvq_layer* layer, const kvq_forward_args* args) {
  if (layer == NULL || args == NULL || args->output == NULL) {
    return make_error(KVQ_ERR_INVALID_ARGUMENT, "forward: bad arguments");
  }
  if (++layer->forward_calls == 2) {
    return make_error(KVQ_ERR_OUT_OF_RANGE, "the stub fails the second forward of every layer");
  }
  int64_t elements = 1;
  for (int32_t d = 0; d < args->output->ndim; ++d) elements *= args->output->shape[d];
  memset(args->output->data, 0, (size_t)(elements * element_bytes(args->output->dtype)));
  return NULL;
}

static const kvq_plugin_api kApi = {
    .struct_size = KVQ_PLUGIN_API_SIZE,
    .abi_major = STUB_ABI_MAJOR,
    .abi_minor = KVQ_ABI_MINOR,
    .negotiate = stub_negotiate,
    .error_code = stub_error_code,
    .error_message = stub_error_message,
    .error_destroy = stub_error_destroy,
    .instance_destroy = stub_instance_destroy,
    .get_info = stub_get_info,
    .layer_create = stub_layer_create,
    .layer_destroy = stub_layer_destroy,
    .cache_geometry = stub_cache_geometry,
    .cache_init = stub_cache_init,
    .cache_write = stub_cache_write,
    .forward = stub_forward,
};

__attribute__((visibility("default"))) const kvq_plugin_api* kvq_plugin_entry(void) {
  return &kApi;
}
