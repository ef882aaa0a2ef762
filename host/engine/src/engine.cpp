#include "kvq_engine/engine.hpp"

#include <fmt/format.h>
#include <kvq_abi_names.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <fstream>
#include <optional>
#include <thread>

#include "attention_model.hpp"
#include "engine_clock.hpp"
#include "kvq_engine/accuracy.hpp"
#include "kvq_engine/activation_generator.hpp"
#include "kvq_engine/block_allocator.hpp"
#include "kvq_engine/checkpoint.hpp"
#include "kvq_engine/plugin.hpp"
#include "kvq_engine/request_timeline.hpp"
#include "kvq_engine/scheduler.hpp"
#include "kvq_engine/step_batch.hpp"
#include "kvq_engine/workload.hpp"
#include "kvq_files/dtype.hpp"
#include "progress_bar.hpp"
#include "tensor_parallel.hpp"

namespace kvq::host {
namespace {

// This process's rank; errors point at the tensor_parallel_size line.
TensorParallelGroup join_group(const Deployment& deployment) {
  try {
    return TensorParallelGroup::join(deployment.parallel.tensor_parallel_size);
  } catch (const Error& e) {
    throw DeploymentError(deployment.locations.tensor_parallel_size, e.what());
  }
}

// Opens the plugin on this rank's device: the local rank's (one device per
// rank of `mpirun -np N` on each machine), or device 0 for every rank with
// parallel.ranks_share_device. A device the plugin lacks is named with the fix.
Plugin open_on_rank_device(const Deployment& deployment, const TensorParallelGroup& group) {
  const int32_t ordinal = deployment.parallel.ranks_share_device ? 0 : group.local_rank();
  try {
    return open_plugin(deployment.plugin.path,
                       NegotiationOptions{deployment.plugin.min_minor,
                                          static_cast<int32_t>(deployment.threads), ordinal});
  } catch (const PluginError& e) {
    if (e.code() != KVQ_ERR_OUT_OF_RANGE || ordinal == 0) throw;
    throw DeploymentError(
        deployment.locations.tensor_parallel_size,
        fmt::format("rank {} is local rank {} on this machine and takes device {}, which the "
                    "plugin refuses ({}): start at most as many ranks per machine as it has "
                    "devices, or set parallel.ranks_share_device: true to put every rank on "
                    "device 0",
                    group.rank(), group.local_rank(), ordinal, e.what()));
  }
}

// Loads and negotiates the deployment's plugin and logs what it offers.
Plugin load_plugin(const Deployment& deployment, const TensorParallelGroup& group) {
  // Every rank learns whether all opened theirs: a rank that failed alone
  // would leave the others waiting in their first collective for ever.
  std::optional<Plugin> opened;
  std::exception_ptr failure;
  try {
    opened.emplace(open_on_rank_device(deployment, group));
  } catch (...) {
    failure = std::current_exception();
  }
  if (!group.all_ok(opened.has_value())) {
    if (failure) std::rethrow_exception(failure);
    throw Error(fmt::format("rank {}: another rank could not open the plugin (its error says why)",
                            group.rank()));
  }
  Plugin plugin = std::move(*opened);
  const PluginInfo& info = plugin.info();
  spdlog::info("plugin '{}' {} by {} (ABI {}.{}), SIMD level {}", info.name, info.version,
               info.vendor, info.abi_major, info.abi_minor, info.simd_level);
  if (plugin.on_device()) {
    spdlog::info("  device: {} {} ({}, {:.1f} GiB)", kvq_device_type_name(info.device_type),
                 info.device_ordinal, info.device_name,
                 static_cast<double>(info.device_memory_bytes) / (1024.0 * 1024 * 1024));
  }
  for (const auto& backend : info.backends) {
    std::vector<std::string> modes;
    for (const auto& mode : backend.kv_modes) {
      modes.push_back(mode.supported ? mode.name : mode.name + " (not built)");
    }
    spdlog::info("  backend '{}': {}", backend.name, fmt::join(modes, ", "));
  }
  return plugin;
}

// Opens the deployment's checkpoint; errors point at its `checkpoint:` line.
std::optional<Checkpoint> open_checkpoint(const Deployment& deployment) {
  if (!deployment.checkpoint) return std::nullopt;
  try {
    Checkpoint checkpoint = Checkpoint::open(*deployment.checkpoint);
    const CheckpointConfig& c = checkpoint.config();
    spdlog::info(
        "checkpoint {}: {} layers, {} heads, {} KV heads, head size {}, {}, {} "
        "safetensors file(s){}",
        deployment.checkpoint->string(), c.num_layers, c.num_heads, c.num_kv_heads, c.head_size,
        model_dtype_name(c.dtype), checkpoint.files().size(),
        checkpoint.description() ? ", with " + std::string(kQuantDescriptionFile) : "");
    if (c.activation_seed && *c.activation_seed != deployment.workload.seed) {
      spdlog::warn(
          "checkpoint {}: its scales were calibrated on the activation generator with "
          "seed {}, but workload.seed is {} (outlier channels differ by seed; expect "
          "poor accuracy)",
          deployment.checkpoint->string(), *c.activation_seed, deployment.workload.seed);
    }
    return checkpoint;
  } catch (const DeploymentError&) {
    throw;
  } catch (const Error& e) {
    throw DeploymentError(deployment.locations.checkpoint, e.what());
  }
}

// The deployment with its model section taken from the checkpoint.
Deployment with_checkpoint_model(const Deployment& deployment,
                                 const std::optional<Checkpoint>& checkpoint) {
  Deployment out = deployment;
  if (checkpoint) out.model = checkpoint->model();
  return out;
}

// Each rank holds whole KV heads (checked before any rank is asked for, so
// a split that cannot work is not answered with "run mpirun -np N").
void check_heads_split(const Deployment& deployment) {
  const ModelSection& model = *deployment.model;
  const int64_t tp = deployment.parallel.tensor_parallel_size;
  if (model.num_kv_heads % tp != 0) {
    throw DeploymentError(
        deployment.locations.tensor_parallel_size,
        fmt::format("model.num_kv_heads ({}) must be a multiple of tensor_parallel_size ({}): "
                    "each rank holds whole KV heads",
                    model.num_kv_heads, tp));
  }
}

// Where this rank computes, for the report.
std::string device_summary(const Plugin& plugin) {
  if (!plugin.on_device()) return "cpu";
  const PluginInfo& info = plugin.info();
  return fmt::format("{} {} ({})", kvq_device_type_name(info.device_type), info.device_ordinal,
                     info.device_name);
}

// This rank's share of the model: contiguous ranges of query and KV heads.
ModelShape model_shape(const Deployment& deployment, const TensorParallelGroup& group) {
  const ModelSection& model = *deployment.model;
  const int tp = group.size();
  return ModelShape{model.num_layers,
                    model.num_heads / tp,
                    model.num_kv_heads / tp,
                    model.head_size,
                    model.head_size,
                    abi_dtype(model.dtype),
                    group.rank(),
                    tp};
}

// One run: the plugin session, the model, the scheduler and the client's
// view of every request. Members are declared in dependency order, so they
// are destroyed in reverse (layers before the plugin instance).
class ServingLoop {
 public:
  ServingLoop(const Deployment& deployment, const RunOptions& options, const Checkpoint* checkpoint,
              const TensorParallelGroup& group)
      : deployment_(deployment),
        options_(options),
        group_(group),
        plugin_(load_plugin(deployment, group)),
        shape_(model_shape(deployment, group)),
        model_(plugin_, deployment, shape_, checkpoint),
        requests_(make_workload(deployment.workload)),
        generator_(
            deployment.workload.seed,
            ActivationShape{shape_.num_layers, deployment.model->num_heads,
                            deployment.model->num_kv_heads, shape_.head_size, shape_.head_size_v}),
        blocks_(model_.sizing().num_blocks),
        scheduler_(
            SchedulerConfig{deployment.kv_cache.block_size, deployment.scheduler.max_num_seqs,
                            deployment.scheduler.max_num_batched_tokens,
                            deployment.scheduler.chunked_prefill,
                            deployment.kv_cache.prefix_caching},
            blocks_),
        batch_(shape_, plugin_),
        accuracy_(
            options.check_every_output
                ? AccuracyChecker(generator_, requests_, INT64_MAX, INT64_MAX, options.kv_model)
                : AccuracyChecker(generator_, requests_, AccuracyChecker::kMaxSequencesPerStep,
                                  AccuracyChecker::kMaxRowsPerSequence, options.kv_model)),
        timelines_(requests_.size()) {
    if (!options_.dump_outputs.empty() && group_.is_root()) {
      dump_.open(options_.dump_outputs, std::ios::binary | std::ios::trunc);
      if (!dump_) {
        throw Error(fmt::format("cannot write the outputs to {}", options_.dump_outputs.string()));
      }
    }
  }

  BenchmarkReport run() {
    spdlog::info("serving {} requests ({} prompt + {} output tokens each)", total(),
                 deployment_.workload.input_len, deployment_.workload.output_len);
    clock_ = EngineClock();
    ProgressBar progress(total(), options_.progress && group_.is_root());
    while (finished_ < total()) {
      progress.update(finished_, scheduler_.num_running(), scheduler_.num_waiting());
      const double now = clock_.now();
      admit_arrivals(now);
      // Requests refused at admission (they can never be served) finish
      // there: the last arrivals may have been exactly those.
      if (finished_ >= total()) break;
      const StepPlan plan = scheduler_.schedule();
      if (plan.empty()) {
        wait_for_next_arrival(now);
        continue;
      }
      run_step(plan);
    }
    return report();
  }

 private:
  int64_t total() const { return static_cast<int64_t>(requests_.size()); }
  const RequestSpec& request(int64_t index) const { return requests_[static_cast<size_t>(index)]; }
  RequestTimeline& timeline(int64_t id) { return timelines_[static_cast<size_t>(id)]; }

  // Sends the requests whose arrival time has come, as far as the client's
  // concurrency limit allows (vLLM's benchmark measures TTFT from sending).
  // The root decides with its clock; the other ranks follow it, so every
  // rank's scheduler sees the same requests in the same steps.
  void admit_arrivals(double now) {
    const int64_t limit = deployment_.workload.max_concurrency;
    if (group_.is_root()) {
      while (next_arrival_ < total() && request(next_arrival_).arrival_s <= now &&
             (limit == 0 || in_flight_ < limit)) {
        send(now);
      }
    }
    const int64_t sent = group_.broadcast(next_arrival_);
    while (next_arrival_ < sent) send(now);
  }

  void send(double now) {
    const RequestSpec& spec = request(next_arrival_++);
    timeline(spec.id).sent = now;
    const std::string refusal =
        scheduler_.add(SequenceSpec{spec.id, spec.prompt_len, spec.output_len, spec.content()});
    if (refusal.empty()) {
      ++in_flight_;
    } else {
      fail(spec.id, refusal);
    }
  }

  void wait_for_next_arrival(double now) {
    if (!group_.is_root()) return;  // the root's next broadcast paces this rank
    // Nothing runs, so the only thing left to wait for is a later arrival;
    // anything else would loop forever.
    if (!scheduler_.idle() || next_arrival_ >= total() || request(next_arrival_).arrival_s <= now) {
      throw Error(fmt::format("the engine stalled with {} of {} requests unfinished (a bug)",
                              total() - finished_, total()));
    }
    // The one wait in the loop: the client's arrival schedule (request_rate
    // > 0), not a stand-in for work.
    std::this_thread::sleep_until(clock_.instant_of(request(next_arrival_).arrival_s));
  }

  // Every layer's cache_write and forward for the step, then the sampled
  // tokens. A plugin error fails the step's requests; the run goes on.
  void run_step(const StepPlan& plan) {
    batch_.prepare(plan, requests_, deployment_.kv_cache.block_size);
    std::vector<int64_t> request_ids;
    for (const auto& chunk : plan.chunks) request_ids.push_back(chunk.request_id);
    // Every N-th step, and the first step of each attention state: a short
    // run must also check decode steps, which read the quantized cache.
    int64_t& state_steps =
        report_.steps_by_attention_state[attention_state_name(plan.attention_state)];
    const bool sample =
        options_.check_every_output ||
        (options_.accuracy_every > 0 && (step_ % options_.accuracy_every == 0 || state_steps == 0));
    ++state_steps;
    ++step_;
    step_outputs_.clear();
    std::string error;
    try {
      for (int64_t layer = 0; layer < model_.num_layers(); ++layer) {
        batch_.generate(generator_, layer);
        const auto begin = EngineClock::Clock::now();
        model_.run_layer(layer, batch_);
        report_.attention_seconds += EngineClock::to_seconds(EngineClock::Clock::now() - begin);
        if (sample && (layer == 0 || options_.check_every_output)) {
          const EngineClock::Pause pause(clock_);  // not part of serving
          accuracy_.check(batch_, request_ids, layer);
        }
        if (!options_.dump_outputs.empty()) {
          const std::byte* bytes = batch_.output().host();
          step_outputs_.insert(step_outputs_.end(), bytes, bytes + batch_.output().byte_size());
        }
      }
    } catch (const PluginError& e) {
      error = e.what();
    }
    // A step fails on every rank when it fails on one (collectives stay
    // matched: no rank returns early before this point).
    if (!group_.all_ok(error.empty())) {
      const std::string message = step_error(error);
      if (group_.is_root()) {
        spdlog::error("step {} ({}, {} requests) failed: {}", step_,
                      attention_state_name(plan.attention_state), plan.chunks.size(), message);
      }
      scheduler_.abort(plan);
      for (const int64_t id : request_ids) fail(id, message);
      in_flight_ -= static_cast<int64_t>(request_ids.size());
      last_event_ = clock_.now();
      return;
    }
    if (!options_.dump_outputs.empty()) dump_step_outputs(plan.num_tokens);
    const double step_end = clock_.now();
    last_event_ = step_end;
    for (const SequenceUpdate& update : scheduler_.commit(plan)) {
      RequestTimeline& t = timeline(update.request_id);
      if (update.produced_token) t.token_times.push_back(step_end);
      if (update.finished) {
        t.done = true;
        ++finished_;
        --in_flight_;
      }
    }
  }

  // The failing ranks' messages, as the root reports them.
  std::string step_error(const std::string& local) const {
    if (group_.size() == 1) return local;
    std::string message;
    const std::vector<std::string> all = group_.gather(local);
    for (size_t r = 0; r < all.size(); ++r) {
      if (all[r].empty()) continue;
      if (!message.empty()) message += "; ";
      message += fmt::format("rank {}: {}", r, all[r]);
    }
    return message;
  }

  // Appends the step's outputs of every layer, [layer][token][head][dim] in
  // the model dtype, with every rank's heads in model order, to the dump.
  void dump_step_outputs(int64_t num_tokens) {
    const std::vector<std::byte> all = group_.gather(step_outputs_);
    if (!group_.is_root()) return;
    const auto ranks = static_cast<size_t>(group_.size());
    const size_t per_rank = step_outputs_.size();
    const auto layers = static_cast<size_t>(model_.num_layers());
    const size_t token_bytes = per_rank / layers / static_cast<size_t>(num_tokens);
    for (size_t layer = 0; layer < layers; ++layer) {
      for (size_t t = 0; t < static_cast<size_t>(num_tokens); ++t) {
        for (size_t r = 0; r < ranks; ++r) {
          const size_t offset =
              r * per_rank + (layer * static_cast<size_t>(num_tokens) + t) * token_bytes;
          dump_.write(reinterpret_cast<const char*>(all.data() + offset),
                      static_cast<std::streamsize>(token_bytes));
        }
      }
    }
    if (!dump_) {
      throw Error(fmt::format("cannot write the outputs to {}", options_.dump_outputs.string()));
    }
  }

  // The NMSE bound of the run: the deployment's accuracy.max_nmse, else a
  // default by what the cache stores, far above what each honest cache
  // costs on the generator's activations (bf16 ~3e-6, int8/fp8 per token
  // head ~1e-2, int4 ~5e-2) and far below a destroyed cache (~1 or worse).
  void set_accuracy_bound(BenchmarkReport& r) const {
    if (deployment_.accuracy_max_nmse) {
      r.accuracy_bound_nmse = *deployment_.accuracy_max_nmse;
      r.accuracy_bound_source = "the deployment's accuracy.max_nmse";
    } else {
      const int32_t element = model_.sizing().geometries.front().element_dtype;
      const bool float_cache =
          element == KVQ_DTYPE_F32 || element == KVQ_DTYPE_F16 || element == KVQ_DTYPE_BF16;
      r.accuracy_bound_nmse = float_cache ? 1e-3 : element == KVQ_DTYPE_U8 ? 0.3 : 0.1;
      r.accuracy_bound_source = float_cache               ? "default for float caches"
                                : element == KVQ_DTYPE_U8 ? "default for 4-bit caches"
                                                          : "default for 8-bit caches";
    }
    r.accuracy_within_bound =
        r.accuracy.sampled_rows == 0 ||
        (r.accuracy.non_finite == 0 && r.accuracy.nmse() <= r.accuracy_bound_nmse);
  }

  void fail(int64_t id, const std::string& message) {
    RequestTimeline& t = timeline(id);
    t.failed = true;
    t.done = true;
    t.error = message;
    ++finished_;
  }

  BenchmarkReport report() {
    BenchmarkReport& r = report_;
    const PluginInfo& info = plugin_.info();
    r.deployment = deployment_.source;
    r.plugin_path = plugin_.path().string();
    r.plugin_name = info.name;
    r.plugin_version = info.version;
    r.abi_version = fmt::format("{}.{}", info.abi_major, info.abi_minor);
    r.backend = deployment_.backend;
    r.kv_cache_dtype = deployment_.kv_cache.dtype;
    if (deployment_.checkpoint) {
      // The mode the checkpoint's scheme gave the layers (e.g. C8's int8).
      try {
        r.kv_cache_dtype = model_.layer(0).info().kv_cache_dtype;
      } catch (const Error&) {
        // layer_info is optional: keep the deployment's string.
      }
      if (!model_.schemes().empty() && !model_.schemes().front().empty()) {
        r.kv_cache_dtype += fmt::format(" (scheme {})", model_.schemes().front());
      }
    }
    r.model_dtype = std::string(model_dtype_name(deployment_.model->dtype));
    r.num_layers = shape_.num_layers;
    r.num_heads = shape_.num_heads;
    r.num_kv_heads = shape_.num_kv_heads;
    r.head_size = shape_.head_size;
    r.threads = deployment_.threads;
    r.request_rate = deployment_.workload.request_rate;
    r.max_concurrency = deployment_.workload.max_concurrency;
    try {
      r.layer_impl = model_.layer(0).info().impl_name;
    } catch (const Error&) {
      // layer_info is optional: the report just omits the implementation name.
    }
    r.num_steps = step_;

    const KvCacheSizing& sizing = model_.sizing();
    r.kv_bytes_per_token = sizing.bytes_per_token();
    r.kv_num_blocks = sizing.num_blocks;
    r.kv_block_size = sizing.block_size;
    r.kv_tokens_fit = sizing.tokens_fit();
    r.kv_cache_gib = static_cast<double>(sizing.total_bytes) / (1024.0 * 1024.0 * 1024.0);
    r.peak_blocks_used = blocks_.peak_used();
    const int64_t blocks_per_request = scheduler_.blocks_needed(
        SequenceSpec{0, deployment_.workload.input_len, deployment_.workload.output_len});
    r.max_concurrency_fit =
        static_cast<double>(sizing.num_blocks) / static_cast<double>(blocks_per_request);
    r.prefix_caching = deployment_.kv_cache.prefix_caching;
    r.prefix_cache_hit_rate = scheduler_.stats().prefix_hit_rate();
    r.preemptions = scheduler_.stats().preemptions;
    r.blocks_in_use_at_end = blocks_.num_used();
    // Every request has finished or failed, so every block must be back
    // (cached prefix blocks count as free): anything else is an engine bug,
    // and every test that serves fails on it.
    if (r.blocks_in_use_at_end != 0 || !scheduler_.idle()) {
      throw Error(
          fmt::format("KV block leak: {} blocks still in use and {} sequences left "
                      "after every request finished (a bug)",
                      r.blocks_in_use_at_end, scheduler_.num_running() + scheduler_.num_waiting()));
    }
    r.accuracy = group_.reduce(accuracy_.stats());
    set_accuracy_bound(r);
    r.accuracy_vs_model = group_.reduce(accuracy_.vs_model());
    r.kv_model_error = group_.reduce(accuracy_.model_error());
    r.is_root = group_.is_root();
    r.tensor_parallel_size = group_.size();
    r.rank_devices = group_.gather(device_summary(plugin_));
    summarize_requests(requests_, timelines_, last_event_, r);
    return r;
  }

  const Deployment& deployment_;
  const RunOptions options_;
  const TensorParallelGroup group_;
  const Plugin plugin_;
  const ModelShape shape_;
  AttentionModel model_;
  const std::vector<RequestSpec> requests_;
  const ActivationGenerator generator_;
  BlockAllocator blocks_;
  Scheduler scheduler_;
  StepBatch batch_;
  AccuracyChecker accuracy_;
  std::vector<RequestTimeline> timelines_;
  BenchmarkReport report_;
  std::vector<std::byte> step_outputs_;  // this rank's outputs of the step, for the dump
  std::ofstream dump_;
  EngineClock clock_;
  int64_t next_arrival_ = 0;
  int64_t in_flight_ = 0;
  int64_t finished_ = 0;
  int64_t step_ = 0;
  double last_event_ = 0.0;
};

}  // namespace

BenchmarkReport run_benchmark(const Deployment& deployment, const RunOptions& options) {
  const std::optional<Checkpoint> checkpoint = open_checkpoint(deployment);
  const Deployment resolved = with_checkpoint_model(deployment, checkpoint);
  check_heads_split(resolved);
  const TensorParallelGroup group = join_group(deployment);
  ServingLoop loop(resolved, options, checkpoint ? &*checkpoint : nullptr, group);
  return loop.run();
}

}  // namespace kvq::host
