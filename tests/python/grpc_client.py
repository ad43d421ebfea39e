"""gRPC client for sluice's end-to-end tests (grpcio, insecure channel = h2c
with prior knowledge, raw bytes, no protobuf).

usage: grpc_client.py HOST:PORT METHOD...

Waits until the channel to HOST:PORT is ready (so a failure below is an
answer, not a failure to reach sluice), calls each METHOD (e.g.
/test.Echo/Say) once with the bytes b"ping", and prints one JSON object:
  {"ready": true, "results": [{"method": ..., "code": "OK" | "UNAVAILABLE" | ...,
                               "details": ..., "response": ...}, ...]}
"""

import json
import sys

import grpc

OPTIONS = [("grpc.enable_http_proxy", 0)]


def call(channel, method):
    stub = channel.unary_unary(method)
    try:
        response = stub(b"ping", timeout=30)
        return {"method": method, "code": "OK", "details": None, "response": response.decode("latin-1")}
    except grpc.RpcError as e:
        return {"method": method, "code": e.code().name, "details": e.details(), "response": None}


def main():
    target, methods = sys.argv[1], sys.argv[2:]
    with grpc.insecure_channel(target, options=OPTIONS) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            print(json.dumps({"ready": False, "results": []}), flush=True)
            return
        results = [call(channel, m) for m in methods]
    print(json.dumps({"ready": True, "results": results}), flush=True)


if __name__ == "__main__":
    main()
