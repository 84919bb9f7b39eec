#!/usr/bin/python3
"""A plain Python grpcio server answering grpc.health.v1.Health/Check with SERVING: the side-by-side peer of
benchmarks/compare/grpc_health.sh. No protobuf code: the response is its two encoded bytes (field 1, varint 1).

Run:  /usr/bin/python3 benchmarks/compare/grpc_health_server.py PORT   (Debian python3-grpcio)
"""
import sys
from concurrent import futures

import grpc

SERVING = b"\x08\x01"


def check(_request, _context):
    return SERVING


def main() -> None:
    port = int(sys.argv[1])
    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"listening on {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
