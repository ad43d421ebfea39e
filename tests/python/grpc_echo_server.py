"""gRPC upstream for sluice's end-to-end tests (h2c, raw bytes, no protobuf).

Listens on a free loopback port, prints {"port": N} on one line, and serves
until stdin closes:
  /test.Echo/Say   answers with the request bytes
  /test.Echo/Fail  fails with INVALID_ARGUMENT "bad input" (a status the
                   upstream chose, which sluice must pass through untouched)
"""

import json
import os
import sys
from concurrent import futures

import grpc


def say(request, context):
    return request


def fail(request, context):
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input")


def main():
    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Say": grpc.unary_unary_rpc_method_handler(say),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": port}), flush=True)
    sys.stdin.read()
    server.stop(grace=None)
    os._exit(0)


if __name__ == "__main__":
    main()
