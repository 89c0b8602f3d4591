// gRPC requests served by yolod, by method and status code, with their latency: a server
// interceptor that counts each call when its status is sent. The method label takes only the
// methods yolod serves ("unknown" for any other name a client sends), so labels stay bounded.
#pragma once

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

namespace yolo {

struct GrpcMetrics {
  // `services`: full names of the protobuf services whose methods are labelled
  // ("yolo.v1.ExperimentService"); gRPC's health and reflection methods always are.
  GrpcMetrics(prometheus::Registry& registry, const std::vector<std::string>& services);

  // The label for a call's method ("/yolo.v1.ExperimentService/StartExperiment").
  std::string MethodLabel(const std::string& method) const;
  // Any thread.
  void Observe(const std::string& method, int code, double seconds);

  prometheus::Family<prometheus::Counter>& requests;     // by method and code
  prometheus::Family<prometheus::Histogram>& durations;  // by method; streams last their life

 private:
  std::set<std::string> methods_;
};

// An interceptor factory for ServerBuilder::experimental().SetInterceptorCreators; `metrics`
// must outlive the server.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeGrpcMetricsInterceptor(
    GrpcMetrics* metrics);

// "OK", "INVALID_ARGUMENT", ...: gRPC's names for its codes.
const char* GrpcCodeName(int code);

}  // namespace yolo
