#include "cli.hpp"

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "bench_command.hpp"
#include "compare_command.hpp"
#include "executable_dir.hpp"
#include "inspect.hpp"
#include "kvq_engine/engine.hpp"
#include "kvq_engine/make_checkpoint.hpp"
#include "kvq_engine/plugin.hpp"
#include "kvq_files/deployment.hpp"
#include "kvq_files/dtype.hpp"
#include "kvq_files/errors.hpp"

namespace kvq::host {
namespace {

constexpr const char* kUsage = R"(usage: kvq COMMAND [ARGS]

commands:
  run [DEPLOY.yaml] [--json FILE] [--accuracy-every N] [--dump-outputs FILE] [--no-progress]
        Serve the deployment's workload through its plugin and print a
        benchmark report (vLLM's serving-benchmark layout) with KV-cache and
        accuracy figures. Without a file, the embedded default deployment
        (deploy/default.yaml) runs. --json writes everything as JSON;
        --accuracy-every N checks every N-th step against float64 (0 = off);
        --dump-outputs appends every step's attention outputs (all layers,
        all heads, model dtype) to FILE. With parallel.tensor_parallel_size N,
        start N ranks: mpirun -np N kvq run DEPLOY.yaml (rank 0 prints).
  inspect PLUGIN.so
        Load and negotiate a plugin; print its version, CPU level, backends,
        KV modes and quantization schemes.
  bench [--quick] [--filter TEXT] [--threads N,...] [--plugin-dir DIR]
        Measure the machine's read bandwidth, then every attention and cache-write
        kernel of the plugins in lib/ next to kvq; print one table (bench/RESULTS.md).
  conform PLUGIN.so...
        Run the conformance suite (the kvq-conform binary next to kvq).
  make-checkpoint OUT_DIR --mode C8|fp8|FAKQuant|INT8_DYNAMIC [--layers N] [--heads H]
                  [--kv-heads K] [--head-size D] [--dtype bf16|fp16|fp32] [--seed S]
                  [--asymmetric] [--calibration-tokens N] [--kv-lora-rank L]
                  [--qk-rope-head-dim R] [--index-topk K] [--force]
        Write a checkpoint directory (config.json, quant_model_description.json,
        model.safetensors) for the synthetic model, with KV scales calibrated
        on the activation generator (defaults: 4 layers, 16 heads, 4 KV heads,
        head size 128, bf16, seed 0, 32768 calibration tokens; C8 scales
        symmetric, max|x|/127 per channel). Use it with
        `checkpoint: OUT_DIR` and the same workload.seed as --seed.
        FAKQuant (MLA: 1 KV head, head size L + R, defaults L 512, R 64) and
        INT8_DYNAMIC (indexer: 1 KV head, rotations, top-k 2048) checkpoints
        load into ascend layers; kvq run refuses them (it drives standard
        attention layers only).
  compare A.json B.json
        Print two `kvq run --json` reports side by side with the ratios B/A
        (KV memory, tokens that fit, throughput, latency, accuracy).

options (any command):
  --log-level trace|debug|info|warn|error|off   (default: info; logs go to stderr)
  -h, --help

exit codes: 0 ok, 1 error, 2 usage, 3 run finished but requests failed,
            4 run finished but its outputs are beyond the accuracy bound
)";

struct UsageError : Error {
  using Error::Error;
};

std::string take_value(const std::vector<std::string>& args, size_t& i) {
  if (i + 1 >= args.size()) throw UsageError(fmt::format("{} needs a value", args[i]));
  return args[++i];
}

int command_run(const std::vector<std::string>& args, std::ostream& out) {
  std::optional<std::string> deployment_file;
  std::optional<std::string> json_file;
  RunOptions options;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--json") {
      json_file = take_value(args, i);
    } else if (args[i] == "--dump-outputs") {
      options.dump_outputs = take_value(args, i);
    } else if (args[i] == "--no-progress") {
      options.progress = false;
    } else if (args[i] == "--accuracy-every") {
      const std::string value = take_value(args, i);
      try {
        size_t used = 0;
        options.accuracy_every = std::stoll(value, &used);
        if (used != value.size() || options.accuracy_every < 0) throw std::invalid_argument(value);
      } catch (const std::exception&) {
        throw UsageError(fmt::format("--accuracy-every needs a count >= 0, got '{}'", value));
      }
    } else if (args[i].starts_with("-")) {
      throw UsageError(fmt::format("run: unknown option '{}'", args[i]));
    } else if (!deployment_file) {
      deployment_file = args[i];
    } else {
      throw UsageError("run takes one deployment file");
    }
  }

  if (json_file) check_report_path(*json_file);  // before serving, not after
  const DeploymentParseOptions parse_options{executable_dir(), true};
  const Deployment deployment = deployment_file
                                    ? load_deployment_file(*deployment_file, parse_options)
                                    : load_default_deployment(parse_options);
  spdlog::info("deployment: {}", deployment.source);
  const BenchmarkReport report = run_benchmark(deployment, options);
  if (!report.is_root) return report.failed > 0 ? kExitFailedRequests : kExitOk;
  print_report(report, out);
  out.flush();
  if (json_file) {
    write_report_json(report, *json_file);
    spdlog::info("wrote {}", *json_file);
  }
  if (!report.accuracy_within_bound) {
    spdlog::error(
        "accuracy check failed: NMSE {:.3e} vs float64 is beyond the bound {:.1e} ({}){}; the "
        "KV cache is not giving the model's attention back",
        report.accuracy.nmse(), report.accuracy_bound_nmse, report.accuracy_bound_source,
        report.accuracy.non_finite > 0
            ? fmt::format(", and {} outputs are not finite", report.accuracy.non_finite)
            : "");
    return kExitAccuracy;
  }
  return report.failed > 0 ? kExitFailedRequests : kExitOk;
}

int command_inspect(const std::vector<std::string>& args, std::ostream& out) {
  if (args.size() != 1 || args[0].starts_with("-")) {
    throw UsageError("inspect takes one plugin path");
  }
  const Plugin plugin = open_plugin(args[0]);
  print_inspection(plugin, out);
  return kExitOk;
}

int64_t integer_value(const std::string& option, const std::string& value) {
  try {
    size_t used = 0;
    const int64_t parsed = std::stoll(value, &used);
    if (used != value.size() || parsed < 0) throw std::invalid_argument(value);
    return parsed;
  } catch (const std::exception&) {
    throw UsageError(fmt::format("{} needs a count >= 0, got '{}'", option, value));
  }
}

int command_make_checkpoint(const std::vector<std::string>& args) {
  std::optional<std::string> out_dir;
  std::optional<std::string> mode;
  std::optional<int64_t> kv_heads, head_size;
  MakeCheckpointOptions options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--mode") {
      mode = take_value(args, i);
    } else if (a == "--layers") {
      options.num_layers = integer_value(a, take_value(args, i));
    } else if (a == "--heads") {
      options.num_heads = integer_value(a, take_value(args, i));
    } else if (a == "--kv-heads") {
      kv_heads = integer_value(a, take_value(args, i));
    } else if (a == "--head-size") {
      head_size = integer_value(a, take_value(args, i));
    } else if (a == "--kv-lora-rank") {
      options.kv_lora_rank = integer_value(a, take_value(args, i));
    } else if (a == "--qk-rope-head-dim") {
      options.qk_rope_head_dim = integer_value(a, take_value(args, i));
    } else if (a == "--index-topk") {
      options.index_topk = integer_value(a, take_value(args, i));
    } else if (a == "--seed") {
      options.seed = static_cast<uint64_t>(integer_value(a, take_value(args, i)));
    } else if (a == "--dtype") {
      const std::string value = take_value(args, i);
      const auto parsed = parse_model_dtype(value);
      if (!parsed)
        throw UsageError(fmt::format("--dtype must be bf16, fp16 or fp32, got '{}'", value));
      options.dtype = *parsed;
    } else if (a == "--calibration-tokens") {
      options.calibration_tokens = integer_value(a, take_value(args, i));
    } else if (a == "--asymmetric") {
      options.asymmetric = true;
    } else if (a == "--force") {
      options.force = true;
    } else if (a.starts_with("-")) {
      throw UsageError(fmt::format("make-checkpoint: unknown option '{}'", a));
    } else if (!out_dir) {
      out_dir = a;
    } else {
      throw UsageError("make-checkpoint takes one output directory");
    }
  }
  if (!out_dir) throw UsageError("make-checkpoint needs an output directory");
  if (!mode) throw UsageError("make-checkpoint needs --mode C8|fp8|FAKQuant|INT8_DYNAMIC");
  if (*mode != "C8" && *mode != "fp8" && *mode != "FAKQuant" && *mode != "INT8_DYNAMIC") {
    throw UsageError(fmt::format(
        "make-checkpoint: unknown --mode '{}' (C8, fp8, FAKQuant, INT8_DYNAMIC)", *mode));
  }
  options.mode = *mode;
  // The MLA latent and the indexer keys are one KV head; an MLA head is the
  // latent plus the rope part. Explicit values are checked by make_checkpoint.
  const bool one_kv_head = *mode == "FAKQuant" || *mode == "INT8_DYNAMIC";
  options.num_kv_heads = kv_heads.value_or(one_kv_head ? 1 : options.num_kv_heads);
  options.head_size = head_size.value_or(
      *mode == "FAKQuant" ? options.kv_lora_rank + options.qk_rope_head_dim : options.head_size);
  make_checkpoint(*out_dir, options);
  return kExitOk;
}

int command_conform(const std::vector<std::string>& args) {
  const std::filesystem::path dir = executable_dir();
  const std::filesystem::path suite = dir / "kvq-conform";
  if (dir.empty() || access(suite.c_str(), X_OK) != 0) {
    throw Error(fmt::format(
        "kvq conform runs the kvq-conform binary next to kvq, but there is none at {} (build the "
        "kvq-conform target, or install kvq)",
        suite.string()));
  }
  std::vector<std::string> owned{suite.string()};
  owned.insert(owned.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : owned) argv.push_back(s.data());
  argv.push_back(nullptr);
  spdlog::default_logger()->flush();
  std::fflush(nullptr);
  execv(suite.c_str(), argv.data());
  throw Error(fmt::format("cannot run {}: {}", suite.string(), std::strerror(errno)));
}

}  // namespace

int run_cli(const std::vector<std::string>& all_args, std::ostream& out, std::ostream& err) {
  try {
    // `conform` forwards everything after it verbatim, options included.
    std::vector<std::string> args;
    std::optional<std::string> command;
    for (size_t i = 0; i < all_args.size(); ++i) {
      const std::string& a = all_args[i];
      if (command == "conform") {
        args.push_back(a);
      } else if (a == "-h" || a == "--help" || a == "help") {
        fmt::print(out, "{}", kUsage);
        return kExitOk;
      } else if (a == "--log-level") {
        const std::string level = take_value(all_args, i);
        const auto parsed = spdlog::level::from_str(level);
        if (parsed == spdlog::level::off && level != "off") {
          throw UsageError(fmt::format("unknown log level '{}'", level));
        }
        spdlog::set_level(parsed);
      } else if (!command) {
        command = a;
      } else {
        args.push_back(a);
      }
    }
    if (!command) throw UsageError("no command given");
    if (*command == "run") return command_run(args, out);
    if (*command == "inspect") return command_inspect(args, out);
    if (*command == "bench") return command_bench(args, out);
    if (*command == "conform") return command_conform(args);
    if (*command == "make-checkpoint") return command_make_checkpoint(args);
    if (*command == "compare") return command_compare(args, out);
    throw UsageError(fmt::format("unknown command '{}'", *command));
  } catch (const UsageError& e) {
    fmt::print(err, "kvq: {}\n\n{}", e.what(), kUsage);
    return kExitUsage;
  } catch (const std::exception& e) {
    fmt::print(err, "kvq: error: {}\n", e.what());
    return kExitError;
  }
}

}  // namespace kvq::host
