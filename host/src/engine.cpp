#include "kvq_host/engine.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <optional>
#include <thread>

#include "kvq_host/accuracy.hpp"
#include "kvq_host/activation_generator.hpp"
#include "kvq_host/attention_model.hpp"
#include "kvq_host/block_allocator.hpp"
#include "kvq_host/checkpoint.hpp"
#include "kvq_host/dtype.hpp"
#include "kvq_host/engine_clock.hpp"
#include "kvq_host/plugin.hpp"
#include "kvq_host/request_timeline.hpp"
#include "kvq_host/scheduler.hpp"
#include "kvq_host/step_batch.hpp"
#include "kvq_host/workload.hpp"

namespace kvq::host {
namespace {

void refuse_unbuilt_features(const Deployment& deployment) {
  if (deployment.parallel.tensor_parallel_size > 1) {
    throw DeploymentError(
        deployment.locations.tensor_parallel_size,
        fmt::format("tensor_parallel_size {} needs a multi-rank launch, which is not built yet; "
                    "use 1",
                    deployment.parallel.tensor_parallel_size));
  }
  if (deployment.kv_cache.prefix_caching) {
    spdlog::warn("kv_cache.prefix_caching: prefix caching is not built yet; running without it");
  }
}

// Loads and negotiates the deployment's plugin and logs what it offers.
Plugin load_plugin(const Deployment& deployment) {
  Plugin plugin = Plugin::load(
      deployment.plugin.path,
      NegotiationOptions{deployment.plugin.min_minor, static_cast<int32_t>(deployment.threads)});
  const PluginInfo& info = plugin.info();
  spdlog::info("plugin '{}' {} by {} (ABI {}.{}), SIMD level {}", info.name, info.version,
               info.vendor, info.abi_major, info.abi_minor, info.simd_level);
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

ModelShape model_shape(const ModelSection& model) {
  return ModelShape{model.num_layers, model.num_heads, model.num_kv_heads,
                    model.head_size,  model.head_size, abi_dtype(model.dtype)};
}

// One run: the plugin session, the model, the scheduler and the client's
// view of every request. Members are declared in dependency order, so they
// are destroyed in reverse (layers before the plugin instance).
class ServingLoop {
 public:
  ServingLoop(const Deployment& deployment, const RunOptions& options, const Checkpoint* checkpoint)
      : deployment_(deployment),
        options_(options),
        plugin_(load_plugin(deployment)),
        shape_(model_shape(*deployment.model)),
        model_(plugin_, deployment, shape_, checkpoint),
        requests_(make_workload(deployment.workload)),
        generator_(deployment.workload.seed,
                   ActivationShape{shape_.num_layers, shape_.num_heads, shape_.num_kv_heads,
                                   shape_.head_size, shape_.head_size_v}),
        blocks_(model_.sizing().num_blocks),
        scheduler_(
            SchedulerConfig{deployment.kv_cache.block_size, deployment.scheduler.max_num_seqs,
                            deployment.scheduler.max_num_batched_tokens,
                            deployment.scheduler.chunked_prefill},
            blocks_),
        batch_(shape_),
        accuracy_(generator_, requests_),
        timelines_(requests_.size()) {}

  BenchmarkReport run() {
    spdlog::info("serving {} requests ({} prompt + {} output tokens each)", total(),
                 deployment_.workload.input_len, deployment_.workload.output_len);
    clock_ = EngineClock();
    while (finished_ < total()) {
      const double now = clock_.now();
      admit_arrivals(now);
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
  void admit_arrivals(double now) {
    const int64_t limit = deployment_.workload.max_concurrency;
    while (next_arrival_ < total() && request(next_arrival_).arrival_s <= now &&
           (limit == 0 || in_flight_ < limit)) {
      const RequestSpec& spec = request(next_arrival_++);
      timeline(spec.id).sent = now;
      const std::string refusal =
          scheduler_.add(SequenceSpec{spec.id, spec.prompt_len, spec.output_len});
      if (refusal.empty()) {
        ++in_flight_;
      } else {
        fail(spec.id, refusal);
      }
    }
  }

  void wait_for_next_arrival(double now) {
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
    const bool sample = options_.accuracy_every > 0 && step_ % options_.accuracy_every == 0;
    ++report_.steps_by_attention_state[attention_state_name(plan.attention_state)];
    ++step_;
    try {
      for (int64_t layer = 0; layer < model_.num_layers(); ++layer) {
        batch_.generate(generator_, layer);
        const auto begin = EngineClock::Clock::now();
        model_.run_layer(layer, batch_);
        report_.attention_seconds += EngineClock::to_seconds(EngineClock::Clock::now() - begin);
        if (sample && layer == 0) {
          const EngineClock::Pause pause(clock_);  // not part of serving
          accuracy_.check(batch_, request_ids, layer);
        }
      }
    } catch (const PluginError& error) {
      spdlog::error("step {} ({}, {} requests) failed: {}", step_,
                    attention_state_name(plan.attention_state), plan.chunks.size(), error.what());
      scheduler_.abort(plan);
      for (const int64_t id : request_ids) fail(id, error.what());
      in_flight_ -= static_cast<int64_t>(request_ids.size());
      last_event_ = clock_.now();
      return;
    }
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
    r.accuracy = accuracy_.stats();
    summarize_requests(requests_, timelines_, last_event_, r);
    return r;
  }

  const Deployment& deployment_;
  const RunOptions options_;
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
  EngineClock clock_;
  int64_t next_arrival_ = 0;
  int64_t in_flight_ = 0;
  int64_t finished_ = 0;
  int64_t step_ = 0;
  double last_event_ = 0.0;
};

}  // namespace

BenchmarkReport run_benchmark(const Deployment& deployment, const RunOptions& options) {
  refuse_unbuilt_features(deployment);
  const std::optional<Checkpoint> checkpoint = open_checkpoint(deployment);
  const Deployment resolved = with_checkpoint_model(deployment, checkpoint);
  ServingLoop loop(resolved, options, checkpoint ? &*checkpoint : nullptr);
  return loop.run();
}

}  // namespace kvq::host
