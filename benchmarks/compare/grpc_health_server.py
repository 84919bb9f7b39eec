#!/usr/bin/python3
"""A plain Python grpcio server answering grpc.health.v1.Health/Check with SERVING: the side-by-side peer of
benchmarks/compare/grpc_health.sh. No protobuf code: the response is its two encoded bytes (field 1, varint 1).
Two servers: grpcio's asyncio server (--aio, the faster: ~2× here) and its classic thread-pool server (8 workers).

Run:  /usr/bin/python3 benchmarks/compare/grpc_health_server.py PORT [--aio]   (Debian python3-grpcio)
"""
import asyncio
import sys
from concurrent import futures

import grpc

SERVING = b"\x08\x01"


def check(_request, _context):
    return SERVING


async def check_async(_request, _context):
    return SERVING


def handlers(method):
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(method)})


async def serve_aio(port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers(check_async),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"listening on {port} (asyncio)", flush=True)
    await server.wait_for_termination()


def main() -> None:
    port = int(sys.argv[1])
    if "--aio" in sys.argv[2:]:
        asyncio.run(serve_aio(port))
        return
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handlers(check),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"listening on {port} (thread pool)", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
