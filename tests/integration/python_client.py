"""A client of yolod's API written only from the .proto files (stubs made by Debian's protoc and
grpc_python_plugin): starts an experiment, watches it to the end, checks the memory report, and
sends a malformed request that yolod must reject while it keeps serving.

Usage: python_client.py HOST:PORT DATA_YAML   (the generated yolo/v1/*_pb2*.py on PYTHONPATH)
"""
import sys

import grpc
from yolo.v1 import experiment_pb2, experiment_pb2_grpc, memory_pb2, memory_pb2_grpc


def main():
    server, data = sys.argv[1], sys.argv[2]
    channel = grpc.insecure_channel(server)
    experiments = experiment_pb2_grpc.ExperimentServiceStub(channel)
    spec = experiment_pb2.ExperimentSpec(
        name="python", args={"data": data, "imgsz": "64", "epochs": "1", "workers": "0"})
    exp = experiments.StartExperiment(experiment_pb2.StartExperimentRequest(spec=spec), timeout=30)
    assert exp.state == experiment_pb2.QUEUED, exp
    states, epochs = [], []
    for event in experiments.WatchExperiment(
            experiment_pb2.WatchExperimentRequest(id=exp.id), timeout=300):
        if event.HasField("experiment"):
            states.append(experiment_pb2.ExperimentState.Name(event.experiment.state))
        if event.HasField("epoch"):
            epochs.append(event.epoch.epoch)
    assert states[-1] == "SUCCEEDED", states
    assert epochs == [1], epochs
    report = memory_pb2_grpc.MemoryServiceStub(channel).GetMemoryReport(
        memory_pb2.GetMemoryReportRequest(), timeout=10)
    assert report.host.total_bytes > 0 and report.daemon.rss_bytes > 0, report
    raw = channel.unary_unary("/yolo.v1.ExperimentService/GetExperiment")
    try:
        raw(b"\xff\xff\xff\xff", timeout=10)
        raise AssertionError("a malformed request was accepted")
    except grpc.RpcError as e:
        assert e.code() != grpc.StatusCode.OK
    try:
        experiments.GetExperiment(experiment_pb2.GetExperimentRequest(id="nope"), timeout=10)
        raise AssertionError("an unknown id was found")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
    # The standard health service: an empty HealthCheckRequest; SERVING is status 1.
    health = channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=10)
    assert health == b"\x08\x01", health
    # Server reflection: list_services (field 7) lists our services.
    reflection = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    answer = b"".join(reflection(iter([b"\x3a\x00"]), timeout=10))
    for service in (b"yolo.v1.ExperimentService", b"yolo.v1.MemoryService",
                    b"yolo.v1.ConfigService"):
        assert service in answer, answer
    listed = experiments.ListExperiments(experiment_pb2.ListExperimentsRequest(), timeout=10)
    assert any(e.id == exp.id for e in listed.experiments)
    print("python client: %s %s" % (exp.id, " -> ".join(states)))


if __name__ == "__main__":
    main()
