#include "server/metrics/metrics_endpoint.h"

#include <gtest/gtest.h>

namespace yolo {
namespace {

HttpRequest Get(const std::string& path, const std::string& authorization = "") {
  HttpRequest r;
  r.method = "GET";
  r.path = path;
  if (!authorization.empty()) r.headers["authorization"] = authorization;
  return r;
}

std::unique_ptr<MetricsEndpoint> Endpoint(const std::string& token, bool open,
                                          const StatusBoard* board = nullptr) {
  MetricsSources sources;
  sources.experiments = [] {
    ExperimentSnapshot s;
    v1::Experiment e;
    e.set_id("20261202-000000-abcd");
    e.set_state(v1::QUEUED);
    s.experiments.push_back(e);
    return s;
  };
  auto endpoint = MetricsEndpoint::Start({"127.0.0.1:0", token, open},
                                         std::make_shared<prometheus::Registry>(), sources, board);
  EXPECT_TRUE(endpoint.ok()) << endpoint.status();
  return std::move(*endpoint);
}

TEST(MetricsEndpointTest, ServesMetricsInTheTextFormat) {
  auto endpoint = Endpoint("", false);
  const HttpResponse r = endpoint->Handle(Get("/metrics"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(r.body.find("# TYPE yolod_experiments gauge"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("yolod_experiments{state=\"queued\"} 1"), std::string::npos);
  EXPECT_EQ(endpoint->Handle(Get("/nothing")).status, 404);
}

TEST(MetricsEndpointTest, WithATokenDataNeedsItAndThePageDoesNot) {
  auto endpoint = Endpoint("s3cret", false);
  EXPECT_EQ(endpoint->Handle(Get("/metrics")).status, 401);
  EXPECT_EQ(endpoint->Handle(Get("/metrics", "Bearer wrong")).status, 401);
  EXPECT_EQ(endpoint->Handle(Get("/api/status", "Basic s3cret")).status, 401);
  EXPECT_EQ(endpoint->Handle(Get("/metrics", "Bearer s3cret")).status, 200);
  EXPECT_EQ(endpoint->Handle(Get("/api/status", "Bearer s3cret")).status, 200);
  const HttpResponse page = endpoint->Handle(Get("/"));
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("<script src=\"chart.js\">"), std::string::npos);
  const HttpResponse chart = endpoint->Handle(Get("/chart.js"));
  EXPECT_NE(chart.body.find("Chart.js v3"), std::string::npos);
  EXPECT_GT(chart.body.size(), 100000u);
  auto open = Endpoint("s3cret", true);
  EXPECT_EQ(open->Handle(Get("/metrics")).status, 200);
}

TEST(MetricsEndpointTest, StatusJsonHoldsTheHistoryAndTheExperiments) {
  MemorySample m;
  m.wall = std::chrono::system_clock::now();
  m.ram_ratio = 0.42;
  m.ram_level = Level::kNotice;
  StatusSources sources;
  sources.latest = [m] { return std::optional<MemorySample>(m); };
  sources.workers = [] {
    v1::WorkerMemory w;
    w.set_experiment_id("e1");
    w.mutable_process()->set_rss_bytes(123456);
    return std::vector<v1::WorkerMemory>{w};
  };
  sources.experiments = [] {
    v1::Experiment e;
    e.set_id("e1");
    e.set_state(v1::RUNNING);
    return std::vector<v1::Experiment>{e};
  };
  sources.thresholds = [] { return std::make_pair(Thresholds{0.7, 0.8, 0.9}, Thresholds{}); };
  StatusBoard board(sources);
  board.SampleOnce();
  board.SampleOnce();
  const std::string json = board.Json();
  EXPECT_NE(json.find("\"ram_used_ratio\":[0.42,0.42]"), std::string::npos) << json;
  EXPECT_NE(json.find("\"rss_history\":[123456,123456]"), std::string::npos) << json;
  EXPECT_NE(json.find("\"level\":\"notice\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"state\":\"running\""), std::string::npos) << json;
}

}  // namespace
}  // namespace yolo
