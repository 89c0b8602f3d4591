#include "server/metrics/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

namespace yolo {
namespace {

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

// Sends `request` and reads the whole answer (the server closes each connection).
std::string Exchange(int port, const std::string& request) {
  const int fd = Connect(port);
  EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string out;
  char buffer[4096];
  for (ssize_t n; (n = recv(fd, buffer, sizeof(buffer), 0)) > 0;) out.append(buffer, n);
  close(fd);
  return out;
}

std::unique_ptr<HttpServer> Echo(HttpServer::Options options = {}) {
  auto server = HttpServer::Start(
      "127.0.0.1:0",
      [](const HttpRequest& r) {
        HttpResponse response;
        response.body = r.method + " " + r.path + " " + r.query;
        return response;
      },
      options);
  EXPECT_TRUE(server.ok()) << server.status();
  return std::move(*server);
}

TEST(HttpServerTest, AnswersGetAndHeadThenCloses) {
  auto server = Echo();
  ASSERT_GT(server->port(), 0);
  const std::string get = Exchange(server->port(), "GET /metrics?a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(get.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << get;
  EXPECT_NE(get.find("Content-Length: 16\r\n"), std::string::npos) << get;
  EXPECT_NE(get.find("\r\n\r\nGET /metrics a=1"), std::string::npos) << get;
  const std::string head = Exchange(server->port(), "HEAD / HTTP/1.0\r\n\r\n");
  EXPECT_NE(head.find("Content-Length: 7\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n") << head;  // no body
}

TEST(HttpServerTest, RefusesOtherMethodsBodiesAndHugeHeads) {
  auto server = Echo();
  EXPECT_EQ(Exchange(server->port(), "POST / HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_EQ(Exchange(server->port(), "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
                .rfind("HTTP/1.1 413", 0),
            0u);
  EXPECT_EQ(Exchange(server->port(), "nonsense\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
  const std::string huge = "GET / HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n";
  EXPECT_EQ(Exchange(server->port(), huge).rfind("HTTP/1.1 431", 0), 0u);
}

TEST(HttpServerTest, ASilentClientDelaysNoOneAndIsDroppedAtItsDeadline) {
  HttpServer::Options options;
  options.timeout = std::chrono::milliseconds(3000);
  auto server = Echo(options);
  const int silent = Connect(server->port());  // sends nothing
  const auto start = std::chrono::steady_clock::now();
  EXPECT_NE(Exchange(server->port(), "GET /x HTTP/1.1\r\n\r\n").find("GET /x"), std::string::npos);
  // Served long before the silent client's deadline: it did not wait behind it.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
  char c;
  EXPECT_EQ(recv(silent, &c, 1, 0), 0);  // closed by the server after its timeout
  close(silent);
}

TEST(HttpServerTest, RefusesABadAddressAndAPortInUse) {
  EXPECT_FALSE(
      HttpServer::Start("nonsense", [](const HttpRequest&) { return HttpResponse(); }).ok());
  auto first = Echo();
  auto second = HttpServer::Start("127.0.0.1:" + std::to_string(first->port()),
                                  [](const HttpRequest&) { return HttpResponse(); });
  ASSERT_FALSE(second.ok());
  EXPECT_NE(std::string(second.status().message()).find("cannot listen"), std::string::npos);
}

}  // namespace
}  // namespace yolo
