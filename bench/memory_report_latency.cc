// GetMemoryReport latency, one call after another on one channel: prints p50, p90, p99 and max
// in milliseconds. Usage: memory_report_latency HOST:PORT [calls (default 2000)]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "yolo/v1/memory.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: memory_report_latency HOST:PORT [calls]\n");
    return 2;
  }
  const int calls = argc > 2 ? std::stoi(argv[2]) : 2000;
  auto channel = grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials());
  auto stub = yolo::v1::MemoryService::NewStub(channel);
  std::vector<double> ms;
  for (int i = 0; i < calls + 50; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    yolo::v1::MemoryReport report;
    const auto start = std::chrono::steady_clock::now();
    grpc::Status s = stub->GetMemoryReport(&ctx, {}, &report);
    const double elapsed =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!s.ok()) {
      std::fprintf(stderr, "GetMemoryReport: %s\n", s.error_message().c_str());
      return 1;
    }
    if (i >= 50) ms.push_back(elapsed);  // the first calls set up the connection
  }
  std::sort(ms.begin(), ms.end());
  auto q = [&](double p) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
  };
  std::printf("%d %.3f %.3f %.3f %.3f\n", calls, q(0.50), q(0.90), q(0.99), ms.back());
  return 0;
}
