#include "server/experiments/worker_process.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "tests/temp_dir.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

// A real child ending as asked, for a real wait status.
int WaitStatusOf(int exit_code, int signal) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (signal != 0) raise(signal);
    _exit(exit_code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(WorkerProcessTest, ClassifiesEachWayAWorkerEnds) {
  EXPECT_EQ(ClassifyWait(WaitStatusOf(0, 0)).exit, v1::WORKER_SUCCEEDED);
  EXPECT_EQ(ClassifyWait(WaitStatusOf(1, 0)).exit, v1::WORKER_FAILED);
  EXPECT_EQ(ClassifyWait(WaitStatusOf(2, 0)).exit, v1::WORKER_FAILED);
  EXPECT_EQ(ClassifyWait(WaitStatusOf(3, 0)).exit, v1::WORKER_STOPPED);
  EXPECT_EQ(ClassifyWait(WaitStatusOf(4, 0)).exit, v1::WORKER_OUT_OF_MEMORY);
  const WorkerEnd killed = ClassifyWait(WaitStatusOf(0, SIGKILL));
  EXPECT_EQ(killed.exit, v1::WORKER_SIGNALED);
  EXPECT_EQ(killed.signal, SIGKILL);
  EXPECT_EQ(killed.Describe(), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(ClassifyWait(WaitStatusOf(1, 0)).Describe(), "exit code 1");
}

TEST(WorkerProcessTest, SpawnsWithItsLogEnvironmentAndOwnProcessGroup) {
  TempDir tmp;
  const fs::path dir = tmp.str();
  const fs::path script = dir / "fake-worker";
  // Stands in for the OS-level contract only: arguments, environment, output, process group.
  std::ofstream(script) << "#!/bin/sh\necho \"args: $*\"\necho \"id: $YOLOD_EXPERIMENT_ID "
                           "socket: $YOLOD_WORKER_SOCKET nice: $YOLOD_WORKER_NICE\"\n"
                           "echo \"error: it broke\" >&2\nps -o pgid= -p $$ | tr -d ' '\nexit 1\n";
  fs::permissions(script, fs::perms::owner_all);
  WorkerLaunch launch;
  launch.worker_path = script.string();
  launch.args = {{"epochs", "3"}, {"data", "d.yaml"}};
  launch.log_path = (dir / "train.log").string();
  launch.socket_path = "/s.sock";
  launch.experiment_id = "exp-1";
  launch.nice = 10;
  auto pid = SpawnWorker(launch);
  ASSERT_TRUE(pid.ok()) << pid.status();
  int status = 0;
  waitpid(*pid, &status, 0);
  EXPECT_EQ(ClassifyWait(status).exit, v1::WORKER_FAILED);
  std::ifstream in(launch.log_path);
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("args: train data=d.yaml epochs=3"), std::string::npos) << log;
  EXPECT_NE(log.find("id: exp-1 socket: /s.sock nice: 10"), std::string::npos) << log;
  EXPECT_NE(log.find(std::to_string(*pid)), std::string::npos) << "own process group: " << log;
  EXPECT_EQ(LastErrorLine(launch.log_path), "it broke");
  launch.worker_path = (dir / "missing").string();
  auto missing = SpawnWorker(launch);
  if (missing.ok()) {  // glibc may report exec failure as exit 127 of the child
    waitpid(*missing, &status, 0);
    EXPECT_EQ(ClassifyWait(status).code, 127);
  } else {
    EXPECT_NE(missing.status().message().find("cannot start"), std::string::npos);
  }
}

}  // namespace
}  // namespace yolo
