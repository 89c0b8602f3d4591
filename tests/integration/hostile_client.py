"""A careless or hostile client against a real yolod, from the .proto files alone: requests that
once froze, fooled or hurt the daemon must now get a clear error while every other client keeps
being answered within its deadline.

Usage: hostile_client.py HOST:PORT STATE_DIR DATA_YAML SCRATCH_DIR YOLOD_PID
       (the generated yolo/v1/*_pb2*.py on PYTHONPATH)
Prints the ids it created, in order, on the last line ("order: id id ...").
"""
import math
import os
import sys
import threading
import time

import grpc
from yolo.v1 import (config_pb2, config_pb2_grpc, experiment_pb2, experiment_pb2_grpc,
                     memory_pb2, memory_pb2_grpc, worker_pb2, worker_pb2_grpc)

SERVER, STATE, DATA, SCRATCH, YOLOD_PID = sys.argv[1:6]
channel = grpc.insecure_channel(SERVER)
experiments = experiment_pb2_grpc.ExperimentServiceStub(channel)
memory = memory_pb2_grpc.MemoryServiceStub(channel)
config = config_pb2_grpc.ConfigServiceStub(channel)


def start(args, name="hostile", timeout=10):
    spec = experiment_pb2.ExperimentSpec(name=name, args=args)
    return experiments.StartExperiment(experiment_pb2.StartExperimentRequest(spec=spec),
                                       timeout=timeout)


def refused(call, want=grpc.StatusCode.INVALID_ARGUMENT, says=""):
    """The call fails with `want`, a message that is short, names what is wrong, and repeats no
    control character."""
    try:
        call()
    except grpc.RpcError as e:
        message = e.details() or ""
        assert e.code() == want, (e.code(), message)
        assert message and len(message) < 600, message
        assert says in message, (says, message)
        assert not any(ord(c) < 0x20 for c in message), repr(message)
        return message
    raise AssertionError("accepted: expected %s (%s)" % (want, says))


def yolod_rss_mb():
    for line in open("/proc/%s/status" % YOLOD_PID):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def write(name, text):
    path = os.path.join(SCRATCH, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# 1. A FIFO as data: two such calls used to hold every handler thread in open().
fifo = os.path.join(SCRATCH, "fifo.yaml")
os.mkfifo(fifo)
errors = []


def start_fifo():
    try:
        refused(lambda: start({"data": fifo}), says="not a regular file")
    except Exception as e:  # reported below
        errors.append(e)


threads = [threading.Thread(target=start_fifo) for _ in range(4)]
for t in threads:
    t.start()
for _ in range(20):
    experiments.ListExperiments(experiment_pb2.ListExperimentsRequest(), timeout=2)
for t in threads:
    t.join(15)
assert not errors, errors
assert not any(t.is_alive() for t in threads), "a FIFO request is still blocked"

# 2. Paths: a NUL byte, control characters, directories, loops, kernel files, long components.
loop_a, loop_b = os.path.join(SCRATCH, "loop_a"), os.path.join(SCRATCH, "loop_b")
os.symlink(loop_a, loop_b)
os.symlink(loop_b, loop_a)
for data, says in [(DATA + "\0/etc/passwd", "NUL"), (SCRATCH, "directory"),
                   (loop_a, "cannot be resolved"), ("/proc/self/mem", "kernel interface"),
                   (os.path.join(SCRATCH, "x" * 300), "over 255 bytes"),
                   (DATA + "\x1b[2J", "control character")]:
    refused(lambda: start({"data": data}), says=says)
refused(lambda: start({"data": DATA, "model": DATA + "\0.pt"}), says="model")

# 3. data.yaml that would have made yolod allocate without bound, or throw.
before = yolod_rss_mb()
refused(lambda: start({"data": write("nc.yaml", "train: t\nval: v\nnc: 2000000000\n")}),
        says="'nc' must be in [1, 10000]")
refused(lambda: start({"data": write("ids.yaml", "train: t\nval: v\nnames: {0: a, 2000000000: b}\n")}),
        says="class id")
refused(lambda: start({"data": write("path.yaml", "path: [a, b]\ntrain: t\nval: v\nnames: [a]\n")}),
        says="'path' must be a path")
refused(lambda: start({"data": write("names.yaml", "train: t\nval: v\nnames: [[a]]\n")}),
        says="names")
assert yolod_rss_mb() < before + 50, (before, yolod_rss_mb())

# 4. Numbers out of any sensible range, and huge values, in specs and in the training config.
for key, value, says in [("imgsz", "99999", "imgsz"), ("epochs", "1e12", "epochs"),
                         ("workers", "100000", "workers"), ("lr0", "50", "lr0"),
                         ("momentum", "1.5", "momentum"), ("seed", "-1", "seed"),
                         ("batch", "1e9", "batch"), ("optimizer", "x" * (3 << 20), "optimizer")]:
    refused(lambda: start({"data": DATA, key: value}), says=says)
    refused(lambda: config.UpdateTrainingConfig(
        config_pb2.UpdateTrainingConfigRequest(set={key: value}), timeout=10), says=says)
refused(lambda: config.UpdateTrainingConfig(
    config_pb2.UpdateTrainingConfigRequest(set={"k" * 100000: "1"}), timeout=10),
    says="unknown argument")

# 5. Names that would forge log lines or repaint a terminal.
for name in ["two\nlines", "red\x1b[31m", "bidi\u202e", "x" * 200]:
    refused(lambda: start({"data": DATA}, name=name), says="name")

# 6. Memory watches with intervals that once spun a core.
for interval, duration in [(math.inf, 1), (1e18, 1), (math.nan, 1), (-1, 1), (1, math.inf),
                           (1, -5)]:
    refused(lambda: list(memory.WatchMemory(memory_pb2.WatchMemoryRequest(
        interval_seconds=interval, duration_seconds=duration), timeout=5)))

for interval in [math.inf, 1e18, math.nan, -1]:
    refused(lambda: list(experiments.WatchExperiment(experiment_pb2.WatchExperimentRequest(
        id="exp-00000000", progress_interval_seconds=interval), timeout=5)),
        says="progress_interval_seconds")

# 7. A process that is not a worker says hello as an experiment: the connection is refused
#    before gRPC reads it, and the experiment is untouched.
victim = start({"data": DATA, "epochs": "1", "imgsz": "64", "workers": "0"}, name="victim")
worker_channel = grpc.insecure_channel("unix:" + os.path.join(STATE, "worker.sock"))
stub = worker_pb2_grpc.WorkerChannelStub(worker_channel)
forged = [worker_pb2.WorkerMessage(hello=worker_pb2.WorkerHello(experiment_id=victim.id, pid=0)),
          worker_pb2.WorkerMessage(epoch=experiment_pb2.EpochResult(epoch=99))]
try:
    for _ in stub.Connect(iter(forged), timeout=5):
        pass
    raise AssertionError("a forged worker was served")
except grpc.RpcError as e:
    assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.PERMISSION_DENIED,
                        grpc.StatusCode.DEADLINE_EXCEEDED), e.code()
got = experiments.GetExperiment(experiment_pb2.GetExperimentRequest(id=victim.id), timeout=5)
assert got.epochs_completed != 99, got

# 8. Order of arrival: experiments created within one second list in the order they came.
ids = [start({"data": DATA, "epochs": "1", "imgsz": "64", "workers": "0"}, name="o%d" % i).id
       for i in range(5)]
for i in ids:
    experiments.StopExperiment(experiment_pb2.StopExperimentRequest(id=i), timeout=10)
listed = [e.id for e in experiments.ListExperiments(
    experiment_pb2.ListExperimentsRequest(), timeout=10).experiments if e.id in ids]
assert listed == ids, (listed, ids)
created = [e.create_time for e in experiments.ListExperiments(
    experiment_pb2.ListExperimentsRequest(), timeout=10).experiments if e.id in ids]
assert any(t.nanos != 0 for t in created), "creation times are whole seconds"
print("order: " + " ".join([victim.id] + ids))
