// The kvq command line, defined once with CLI11: the definitions below parse
// the arguments and generate `kvq --help` and every `kvq COMMAND --help`, so
// the help cannot drift from what is accepted.
#include "cli.hpp"

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>

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

constexpr const char* kExitCodes =
    "exit codes: 0 ok, 1 error, 2 usage, 3 run finished but requests failed,\n"
    "            4 run finished but its outputs are beyond the accuracy bound";

// CLI11 2.1's NonNegativeNumber / PositiveNumber print a range up to DBL_MAX;
// these say what is wanted and repeat what was given.
CLI::Validator count_at_least(int64_t minimum) {
  const std::string wanted = minimum == 0 ? "a count >= 0" : fmt::format("a count >= {}", minimum);
  return CLI::Validator(
      [minimum, wanted](std::string& text) -> std::string {
        try {
          size_t used = 0;
          const long long value = std::stoll(text, &used);
          if (used == text.size() && value >= minimum) return "";
        } catch (const std::exception&) {
        }
        return fmt::format("needs {}, got '{}'", wanted, text);
      },
      "");
}

CLI::Validator seconds_at_least_zero() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          size_t used = 0;
          const double value = std::stod(text, &used);
          if (used == text.size() && value >= 0.0) return "";
        } catch (const std::exception&) {
        }
        return fmt::format("needs seconds >= 0, got '{}'", text);
      },
      "");
}

CLI::Validator log_level_name() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        // spdlog maps every unknown name to off.
        if (spdlog::level::from_str(text) != spdlog::level::off || text == "off") return "";
        return fmt::format("unknown log level '{}' (trace, debug, info, warn, error, off)", text);
      },
      "");
}

CLI::Validator model_dtype_name() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (parse_model_dtype(text)) return "";
        return fmt::format("must be bf16, fp16 or fp32, got '{}'", text);
      },
      "");
}

struct RunArgs {
  std::string deployment_file;  // "" = the embedded default
  std::string json_file;        // "" = none
  bool no_progress = false;
  RunOptions options;
};

// A report's exit code: accuracy beyond the bound, then failed requests.
int exit_code_of(const BenchmarkReport& report) {
  if (!report.accuracy_within_bound) return kExitAccuracy;
  return report.failed > 0 ? kExitFailedRequests : kExitOk;
}

// `kvq run` without a file: the embedded default deployment served twice,
// with its bf16 cache and with an int8_per_token_head cache in the same
// memory, printed side by side (kvq compare's table): what a quantized cache
// buys (tokens that fit, speed) and costs (accuracy vs float64) in one screen.
int run_default_side_by_side(const RunArgs& args, std::ostream& out) {
  const DeploymentParseOptions parse_options{executable_dir(), true};
  RunOptions options = args.options;
  options.progress = !args.no_progress;
  const Deployment bf16 = load_default_deployment(parse_options);
  const BenchmarkReport a = run_benchmark(bf16, options);
  Deployment int8 = bf16;
  int8.kv_cache.dtype = "int8_per_token_head";
  int8.kv_cache.num_blocks.reset();
  int8.kv_cache.memory_gib = a.kv_cache_gib;  // the bf16 cache's memory
  const BenchmarkReport b = run_benchmark(int8, options);
  if (!a.is_root) return std::max(exit_code_of(a), exit_code_of(b));

  // kvq compare reads the reports' JSON: written to a private folder.
  std::string pattern = (std::filesystem::temp_directory_path() / "kvq-default-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr)
    throw Error(
        fmt::format("cannot make a temporary folder {}: {}", pattern, std::strerror(errno)));
  const std::filesystem::path dir(pattern);
  struct RemoveDir {
    std::filesystem::path dir;
    ~RemoveDir() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  } remove_dir{dir};
  write_report_json(a, dir / "bf16.json");
  write_report_json(b, dir / "int8_per_token_head.json");
  fmt::print(out,
             "The embedded default deployment (deploy/default.yaml) served with a bfloat16 KV "
             "cache (A) and an\nint8_per_token_head cache in the same memory (B); each run's "
             "full report: kvq run deploy/default.yaml.\n");
  ReportComparison comparison =
      compare_report_files(dir / "bf16.json", dir / "int8_per_token_head.json");
  comparison.a_file = "default deployment, bfloat16 cache";
  comparison.b_file = "default deployment, int8_per_token_head cache";
  print_comparison(comparison, out);
  out.flush();
  return std::max(exit_code_of(a), exit_code_of(b));
}

int command_run(const RunArgs& args, std::ostream& out) {
  if (args.deployment_file.empty() && args.json_file.empty() && args.options.dump_outputs.empty())
    return run_default_side_by_side(args, out);
  if (!args.json_file.empty()) check_report_path(args.json_file);  // before serving, not after
  const DeploymentParseOptions parse_options{executable_dir(), true};
  const Deployment deployment = args.deployment_file.empty()
                                    ? load_default_deployment(parse_options)
                                    : load_deployment_file(args.deployment_file, parse_options);
  spdlog::info("deployment: {}", deployment.source);
  RunOptions options = args.options;
  options.progress = !args.no_progress;
  const BenchmarkReport report = run_benchmark(deployment, options);
  if (!report.is_root) return report.failed > 0 ? kExitFailedRequests : kExitOk;
  print_report(report, out);
  out.flush();
  if (!args.json_file.empty()) {
    write_report_json(report, args.json_file);
    spdlog::info("wrote {}", args.json_file);
  }
  if (!report.accuracy_within_bound) {
    spdlog::error(
        "accuracy check failed: NMSE {:.3e} vs float64 is beyond the bound {:.1e} ({}){}; the "
        "KV cache is not giving the model's attention back",
        report.accuracy.nmse(), report.accuracy_bound_nmse, report.accuracy_bound_source,
        report.accuracy.non_finite > 0
            ? fmt::format(", and {} outputs are not finite", report.accuracy.non_finite)
            : "");
  }
  return exit_code_of(report);
}

struct MakeCheckpointArgs {
  std::string out_dir;
  std::string dtype = "bf16";
  std::optional<int64_t> kv_heads, head_size;  // their defaults depend on --mode
  MakeCheckpointOptions options;
};

int command_make_checkpoint(MakeCheckpointArgs args) {
  MakeCheckpointOptions& options = args.options;
  options.dtype = *parse_model_dtype(args.dtype);  // checked by model_dtype_name()
  // The MLA latent and the indexer keys are one KV head; an MLA head is the
  // latent plus the rope part. Explicit values are checked by make_checkpoint.
  const bool one_kv_head = options.mode == "FAKQuant" || options.mode == "INT8_DYNAMIC";
  options.num_kv_heads = args.kv_heads.value_or(one_kv_head ? 1 : options.num_kv_heads);
  options.head_size = args.head_size.value_or(options.mode == "FAKQuant"
                                                  ? options.kv_lora_rank + options.qk_rope_head_dim
                                                  : options.head_size);
  make_checkpoint(args.out_dir, options);
  return kExitOk;
}

[[noreturn]] void command_conform(const std::vector<std::string>& args) {
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

// Every command's arguments land in one of these; parsing fills them, then
// the chosen command runs.
struct Parsed {
  std::string log_level = "info";
  RunArgs run;
  std::string inspect_plugin;
  BenchOptions bench;
  MakeCheckpointArgs make_checkpoint;
  std::string compare_a, compare_b;
};

// Options that take a count show as "--layers N" in the help (CLI11 would
// say INT).
CLI::Option* add_count(CLI::App* app, const std::string& name, int64_t& value,
                       const std::string& help, int64_t minimum = 0) {
  return app->add_option(name, value, help)->type_name("N")->check(count_at_least(minimum));
}

// A command: one line for `kvq --help`, the details and the exit codes below
// its own --help.
CLI::App* add_command(CLI::App& app, const std::string& name, const std::string& summary,
                      const std::string& details) {
  CLI::App* command = app.add_subcommand(name, summary);
  command->footer(details + "\n\n" + kExitCodes);
  return command;
}

void define_commands(CLI::App& app, Parsed& p) {
  app.get_formatter()->label("Usage", "usage");
  app.get_formatter()->column_width(36);
  app.footer(kExitCodes);
  app.fallthrough();  // --log-level may come after the command, as before
  app.add_option("--log-level", p.log_level,
                 "trace|debug|info|warn|error|off (default: info; logs go to stderr)")
      ->type_name("LEVEL")
      ->check(log_level_name());
  app.add_subcommand("help", "Print this help.");

  CLI::App* run = add_command(
      app, "run", "Serve a deployment's workload and print the benchmark report.",
      "The report follows vLLM's serving-benchmark layout, with KV-cache and accuracy figures.\n"
      "With parallel.tensor_parallel_size N, start N ranks: mpirun -np N kvq run DEPLOY.yaml\n"
      "(rank 0 prints).");
  run->add_option("DEPLOY.yaml", p.run.deployment_file,
                  "The deployment. Without one, the embedded default (deploy/default.yaml) is "
                  "served with its bfloat16 cache and with an int8_per_token_head cache in the "
                  "same memory, side by side (with --json or --dump-outputs: the default alone).");
  run->add_option("--json", p.run.json_file, "Also write the report as JSON to FILE.")
      ->type_name("FILE");
  add_count(run, "--accuracy-every", p.run.options.accuracy_every,
            "Check every N-th step against float64 (0 = off; default 8).");
  run->add_option("--dump-outputs", p.run.options.dump_outputs,
                  "Append every step's attention outputs (all layers, all heads, model dtype) "
                  "to FILE.")
      ->type_name("FILE");
  run->add_flag("--no-progress", p.run.no_progress,
                "No progress bar on stderr (it is drawn only when stderr is a terminal).");

  CLI::App* inspect = add_command(
      app, "inspect", "Load and negotiate a plugin; print what it offers.",
      "Prints the plugin's version, CPU level, backends, KV modes and quantization schemes.");
  inspect->add_option("PLUGIN.so", p.inspect_plugin, "The plugin's shared library.")->required();

  CLI::App* bench = add_command(
      app, "bench", "Time every attention and cache-write kernel against the memory bandwidth.",
      "Measures the machine's read bandwidth, then every kernel of the plugins in lib/ next to\n"
      "kvq, and prints one table (bench/RESULTS.md).");
  p.bench.plugin_dir = (executable_dir() / ".." / "lib").lexically_normal();
  bench->add_flag("--quick", p.bench.quick,
                  "Small shapes, a few seconds (the table has the same rows).");
  bench->add_option("--filter", p.bench.filter, "Only rows whose \"kind mode\" contains TEXT.")
      ->type_name("TEXT");
  bench
      ->add_option("--shape", p.bench.shape,
                   "Only cases whose shape contains TEXT (\"1 seq x 16384 keys\").")
      ->type_name("TEXT");
  bench->add_option("--heads", p.bench.heads, "Only the head layout Q/KV (e.g. 32/8).")
      ->type_name("Q/KV");
  bench
      ->add_option("--pool-mib", p.bench.pool_mib,
                   "Cache pool per case in MiB (small: K/V stay in the CPU caches).")
      ->type_name("N")
      ->check(count_at_least(1));
  bench->add_option("--threads", p.bench.threads, "Plugin thread counts to run (default 1,2).")
      ->type_name("N,...")
      ->delimiter(',')
      ->check(count_at_least(1));
  bench
      ->add_option("--plugin-dir", p.bench.plugin_dir,
                   "Where the plugins are (default: lib/ next to kvq's bin/).")
      ->type_name("DIR");
  bench
      ->add_option("--min-time", p.bench.min_seconds,
                   "Timed runs per case add up to at least this (default 0.5, --quick 0.005).")
      ->type_name("SECONDS")
      ->check(seconds_at_least_zero());

  CLI::App* conform = add_command(
      app, "conform", "Run the conformance suite (kvq-conform) on plugins.",
      "kvq conform [SUITE OPTIONS] PLUGIN.so...: every argument after `conform` goes unchanged\n"
      "to the kvq-conform binary next to kvq; `kvq conform PLUGIN.so --help` prints its options.");
  // The suite has its own options; CLI11 only finds where they start.
  conform->prefix_command()->allow_extras()->fallthrough(false);

  MakeCheckpointArgs& m = p.make_checkpoint;
  CLI::App* make = add_command(
      app, "make-checkpoint", "Write a checkpoint for the synthetic model, KV scales calibrated.",
      "Writes config.json, quant_model_description.json and model.safetensors, with KV scales\n"
      "calibrated on the activation generator (C8: symmetric, max|x|/127 per channel). Use it\n"
      "with `checkpoint: OUT_DIR` and the same workload.seed as --seed. FAKQuant (MLA) and\n"
      "INT8_DYNAMIC (indexer) checkpoints load into ascend layers; kvq run refuses them (it\n"
      "drives standard attention layers only).");
  make->add_option("OUT_DIR", m.out_dir, "The checkpoint directory to write.")->required();
  make->add_option("--mode", m.options.mode, "The quantization the checkpoint declares.")
      ->required()
      ->type_name("MODE")
      ->check(CLI::IsMember({"C8", "fp8", "FAKQuant", "INT8_DYNAMIC"}));
  add_count(make, "--layers", m.options.num_layers, "Attention layers (default 4).");
  add_count(make, "--heads", m.options.num_heads, "Query heads (default 16).");
  make->add_option("--kv-heads", m.kv_heads,
                   "KV heads (default 4; 1 for FAKQuant and INT8_DYNAMIC).")
      ->type_name("N")
      ->check(count_at_least(0));
  make->add_option("--head-size", m.head_size, "Head size (default 128; L + R for FAKQuant).")
      ->type_name("N")
      ->check(count_at_least(0));
  make->add_option("--dtype", m.dtype, "The model dtype: bf16, fp16 or fp32 (default bf16).")
      ->type_name("DTYPE")
      ->check(model_dtype_name());
  make->add_option("--seed", m.options.seed,
                   "The activation generator's seed (a deployment's workload.seed; default 0).")
      ->type_name("N")
      ->check(count_at_least(0));
  make->add_flag("--asymmetric", m.options.asymmetric, "C8: asymmetric scales with offsets.");
  add_count(make, "--calibration-tokens", m.options.calibration_tokens,
            "Tokens of the calibration sample (default 32768).");
  add_count(make, "--kv-lora-rank", m.options.kv_lora_rank, "FAKQuant: L (default 512).");
  add_count(make, "--qk-rope-head-dim", m.options.qk_rope_head_dim, "FAKQuant: R (default 64).");
  add_count(make, "--index-topk", m.options.index_topk, "INT8_DYNAMIC: top-k (default 2048).");
  make->add_flag("--force", m.options.force, "Replace a checkpoint already in OUT_DIR.");

  CLI::App* compare = add_command(
      app, "compare", "Print two `kvq run --json` reports side by side, with ratios B/A.",
      "Rows: KV memory per token, tokens and requests that fit, throughput, TTFT / TPOT / ITL,\n"
      "accuracy against float64.");
  compare->add_option("A.json", p.compare_a, "The baseline report.")->required();
  compare->add_option("B.json", p.compare_b, "The report compared with it.")->required();
}

// CLI11 reports a missing command before a word it does not know, and says
// "A subcommand is required" for both; name the word instead.
std::string usage_message(const CLI::App& app, const CLI::ParseError& e) {
  if (app.get_subcommands().empty() && dynamic_cast<const CLI::RequiredError*>(&e)) {
    const std::vector<std::string> rest = app.remaining();
    if (rest.empty()) return "no command given";
    if (rest.front().starts_with("-")) return fmt::format("unknown option '{}'", rest.front());
    return fmt::format("unknown command '{}'", rest.front());
  }
  return e.what();
}

int dispatch(CLI::App& app, const Parsed& p, std::ostream& out) {
  spdlog::set_level(spdlog::level::from_str(p.log_level));
  if (app.got_subcommand("help")) {
    // app.help() would print the help of the command given, here `help` itself.
    out << app.get_formatter()->make_help(&app, app.get_name(), CLI::AppFormatMode::Normal);
    return kExitOk;
  }
  if (app.got_subcommand("run")) return command_run(p.run, out);
  if (app.got_subcommand("inspect")) {
    print_inspection(open_plugin(p.inspect_plugin), out);
    return kExitOk;
  }
  if (app.got_subcommand("bench")) return command_bench(p.bench, out);
  if (app.got_subcommand("conform")) command_conform(app.get_subcommand("conform")->remaining());
  if (app.got_subcommand("make-checkpoint")) return command_make_checkpoint(p.make_checkpoint);
  if (app.got_subcommand("compare")) {
    print_comparison(compare_report_files(p.compare_a, p.compare_b), out);
    return kExitOk;
  }
  // require_subcommand(1) makes CLI11 refuse a command line without one.
  throw std::logic_error("kvq: CLI11 accepted a command line without a command");
}

}  // namespace

int run_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app(
      "kvq: serve a deployment through a quantized-KV-cache attention plugin, and "
      "the tools around it.",
      "kvq");
  Parsed parsed;
  try {
    define_commands(app, parsed);
    app.require_subcommand(1);
    // CLI11 takes the arguments last to first.
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
    return dispatch(app, parsed, out);
  } catch (const CLI::CallForHelp&) {
    out << app.help();  // the help of the command given, or kvq's
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    fmt::print(err, "kvq: {}\n\n{}", usage_message(app, e), app.help());
    return kExitUsage;
  } catch (const std::exception& e) {
    fmt::print(err, "kvq: error: {}\n", e.what());
    return kExitError;
  }
}

}  // namespace kvq::host
