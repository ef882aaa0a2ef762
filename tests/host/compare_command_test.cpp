// `kvq compare A.json B.json`: two real reports (two tiny runs through the
// Triton plugin, bf16 and int8 per-token-head, written by the real JSON
// writer) printed side by side; every printed ratio equals B/A recomputed
// from the BenchmarkReport values. Missing files, bad JSON and JSON that is
// not a kvq report are refused with messages naming the file.
#include "compare_command.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "kvq_engine/engine.hpp"
#include "kvq_engine/report.hpp"
#include "kvq_files/deployment.hpp"
#include "kvq_files/errors.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::ScratchDir;
using ::testing::ThrowsMessage;

BenchmarkReport tiny_run(const std::string& kv_dtype) {
  const std::string yaml = "plugin: {path: '" + testing::triton_plugin() +
                           "'}\nbackend: triton\n"
                           "model: {num_layers: 2, num_heads: 4, num_kv_heads: 2, head_size: 64, "
                           "dtype: bf16}\n"
                           "kv_cache: {dtype: " +
                           kv_dtype +
                           ", block_size: 16, memory_gib: 0.01}\n"
                           "workload: {num_prompts: 4, input_len: 48, output_len: 6, seed: 1}\n"
                           "threads: 1\n";
  const Deployment d = parse_deployment(yaml, "tiny.yaml", ".", DeploymentParseOptions{{}, true});
  return run_benchmark(d, RunOptions{1});
}

// The row of `label` in the printed table.
std::string row_of(const std::string& text, const std::string& label) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(label)) return line;
  }
  ADD_FAILURE() << "no row " << label << " in\n" << text;
  return "";
}

std::string ratio_text(double a, double b) {
  return fmt::format("{:.3f}", b / a);
}

TEST(CompareCommandTest, PrintsTwoRealReportsWithTheirRatios) {
  if (testing::triton_plugin().empty()) GTEST_SKIP() << "this build has no triton plugin";
  const ScratchDir dir;
  const BenchmarkReport a = tiny_run("bfloat16");
  const BenchmarkReport b = tiny_run("int8_per_token_head");
  ASSERT_EQ(a.failed + b.failed, 0);
  write_report_json(a, dir.path() / "a.json");
  write_report_json(b, dir.path() / "b.json");

  std::ostringstream out;
  print_comparison(compare_report_files(dir.path() / "a.json", dir.path() / "b.json"), out);
  const std::string text = out.str();
  EXPECT_THAT(text, AllOf(HasSubstr("backend triton, KV cache bfloat16, 4 ok / 0 failed"),
                          HasSubstr("KV cache int8_per_token_head")));

  const struct {
    const char* label;
    double a, b;
  } expected[] = {
      {"KV memory per token (bytes):", a.kv_bytes_per_token, b.kv_bytes_per_token},
      {"Tokens that fit:", double(a.kv_tokens_fit), double(b.kv_tokens_fit)},
      {"Max concurrency (full requests):", a.max_concurrency_fit, b.max_concurrency_fit},
      {"Request throughput (req/s):", a.request_throughput, b.request_throughput},
      {"Output token throughput (tok/s):", a.output_throughput, b.output_throughput},
      {"Total Token throughput (tok/s):", a.total_token_throughput, b.total_token_throughput},
      {"Mean TTFT (ms):", a.ttft.mean_ms, b.ttft.mean_ms},
      {"Median TTFT (ms):", a.ttft.median_ms, b.ttft.median_ms},
      {"P99 TTFT (ms):", a.ttft.p99_ms, b.ttft.p99_ms},
      {"Mean TPOT (ms):", a.tpot.mean_ms, b.tpot.mean_ms},
      {"Median TPOT (ms):", a.tpot.median_ms, b.tpot.median_ms},
      {"P99 TPOT (ms):", a.tpot.p99_ms, b.tpot.p99_ms},
      {"Mean ITL (ms):", a.itl.mean_ms, b.itl.mean_ms},
      {"Median ITL (ms):", a.itl.median_ms, b.itl.median_ms},
      {"P99 ITL (ms):", a.itl.p99_ms, b.itl.p99_ms},
      {"Max abs error:", a.accuracy.max_abs_error, b.accuracy.max_abs_error},
      {"Mean abs error:", a.accuracy.mean_abs_error(), b.accuracy.mean_abs_error()},
      {"Cosine similarity:", a.accuracy.cosine(), b.accuracy.cosine()},
  };
  for (const auto& e : expected) {
    ASSERT_GT(e.a, 0.0) << e.label;  // the tiny runs measured something
    const std::string row = row_of(text, e.label);
    EXPECT_TRUE(row.ends_with(" " + ratio_text(e.a, e.b))) << row;
  }
  // The headline figure, independently of the reports: bf16 rows of 64
  // channels are 128 bytes, int8 per-token-head rows 64 + 4.
  EXPECT_THAT(row_of(text, "KV memory per token (bytes):"),
              AllOf(HasSubstr("1024.0"), HasSubstr("544.0"), HasSubstr(ratio_text(128, 68))));
  // Bit-for-bit on the accuracy row: the cosine of the bf16 run is printed
  // with 6 decimals, as kvq run prints it.
  EXPECT_THAT(row_of(text, "Cosine similarity:"),
              HasSubstr(fmt::format("{:.6f}", a.accuracy.cosine())));
}

TEST(CompareCommandTest, UndefinedRatiosPrintADash) {
  const ScratchDir dir;
  BenchmarkReport a, b;  // no accuracy samples: the cosine is NaN -> null in JSON
  a.kv_bytes_per_token = 0.0;
  b.kv_bytes_per_token = 68.0;
  a.request_throughput = 2.0;
  b.request_throughput = 3.0;
  write_report_json(a, dir.path() / "a.json");
  write_report_json(b, dir.path() / "b.json");
  const ReportComparison c = compare_report_files(dir.path() / "a.json", dir.path() / "b.json");
  std::ostringstream out;
  print_comparison(c, out);
  EXPECT_TRUE(row_of(out.str(), "KV memory per token (bytes):").ends_with(" -"));
  EXPECT_TRUE(row_of(out.str(), "Request throughput (req/s):").ends_with(" 1.500"));
}

TEST(CompareCommandTest, RefusesWhatIsNotAReportNamingTheFile) {
  const ScratchDir dir;
  write_report_json(BenchmarkReport{}, dir.path() / "good.json");
  const std::string good = (dir.path() / "good.json").string();
  const auto refuses = [&](const std::string& a, const std::string& message) {
    std::ostringstream out;
    EXPECT_THAT([&] { print_comparison(compare_report_files(a, good), out); },
                ThrowsMessage<Error>(AllOf(HasSubstr(a), HasSubstr(message))))
        << a;
  };
  refuses((dir.path() / "missing.json").string(),
          ": no such file (write a report with kvq run --json FILE)");
  refuses(dir.write("bad.json", "{\"completed\": 3,").string(), ": not valid JSON: ");
  refuses(dir.write("array.json", "[1, 2]").string(),
          ": not a kvq run report (a JSON array, not an object)");
  refuses(dir.write("other.json", "{\"name\": \"x\", \"version\": 1}").string(),
          ": not a kvq run report (no \"plugin\" key; write one with kvq run --json FILE)");
  // A report whose figure has the wrong type names the key.
  std::string text = testing::read_text(good);
  const std::string from = "\"tokens_fit\": 0";
  ASSERT_NE(text.find(from), std::string::npos);
  text.replace(text.find(from), from.size(), "\"tokens_fit\": \"many\"");
  refuses(dir.write("typed.json", text).string(),
          ": \"kv_cache.tokens_fit\" must be a number, not \"many\"");
}

TEST(CompareCommandTest, TheKvqCommandRunsIt) {
  const ScratchDir dir;
  BenchmarkReport a, b;
  a.output_throughput = 100.0;
  b.output_throughput = 125.0;
  write_report_json(a, dir.path() / "a.json");
  write_report_json(b, dir.path() / "b.json");
  const auto ok =
      testing::run_process({KVQ_TEST_KVQ_EXE, "compare", (dir.path() / "a.json").string(),
                            (dir.path() / "b.json").string()});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_TRUE(row_of(ok.out, "Output token throughput (tok/s):").ends_with(" 1.250"));
  const auto missing =
      testing::run_process({KVQ_TEST_KVQ_EXE, "compare", (dir.path() / "a.json").string(),
                            (dir.path() / "nope.json").string()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("nope.json: no such file"));
  // One report is a usage error (exit 2) naming the missing argument.
  const auto one =
      testing::run_process({KVQ_TEST_KVQ_EXE, "compare", (dir.path() / "a.json").string()});
  EXPECT_EQ(one.exit_code, 2);
  EXPECT_THAT(one.err, HasSubstr("B.json is required"));
}

}  // namespace
}  // namespace kvq::host
