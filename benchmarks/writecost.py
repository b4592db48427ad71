"""What one loopback TCP `write` costs on this machine, before any server code runs.

Fan-out ends in one `write` per member per flush, and on loopback that system
call also runs the receiving side's TCP stack, so its cost sets a floor under
CPU per delivery for every server, in any language. This measures it alone: a
writer process (core 1, like the server) sends `size`-byte chunks round-robin
over `conns` connections to a reader process (core 0, like wsload) that drains
them with epoll, and reports the writer's user and system CPU per write.

    python benchmarks/writecost.py                # 1,400 B: 8 F2 frames
    python benchmarks/writecost.py --size 5600    # 32 F1 frames

Dividing by the deliveries a write carries gives the floor per delivery: F2
allows 8 messages in flight per room, so at most 8 frames per write.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import select
import socket
import time


def reader(port: int, conns: int, ready: multiprocessing.synchronize.Event) -> None:
    """Accept `conns` connections and drain them until every peer has closed."""
    os.sched_setaffinity(0, {0})
    listener = socket.create_server(("127.0.0.1", port))
    ready.set()
    poller = select.epoll()
    socks: dict[int, socket.socket] = {}
    for _ in range(conns):
        sock, _ = listener.accept()
        sock.setblocking(False)
        socks[sock.fileno()] = sock
        poller.register(sock.fileno(), select.EPOLLIN)
    while socks:
        for fd, _ in poller.poll():
            data = socks[fd].recv(1 << 20)
            if not data:
                poller.unregister(fd)
                socks.pop(fd).close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1400, help="bytes per write")
    parser.add_argument("--conns", type=int, default=500, help="connections written round-robin")
    parser.add_argument("--writes", type=int, default=200_000)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    ready = multiprocessing.get_context("fork").Event()
    proc = multiprocessing.get_context("fork").Process(target=reader, args=(args.port, args.conns, ready))
    proc.start()
    ready.wait()
    os.sched_setaffinity(0, {1})
    socks = [socket.create_connection(("127.0.0.1", args.port)) for _ in range(args.conns)]
    for sock in socks:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as uvloop sets it
    chunk = b"x" * args.size
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for i in range(args.writes):
        socks[i % args.conns].send(chunk)
    after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    for sock in socks:
        sock.close()
    proc.join()
    user = (after.ru_utime - before.ru_utime) / args.writes * 1e6
    system = (after.ru_stime - before.ru_stime) / args.writes * 1e6
    print(
        f"{args.writes} writes of {args.size} B over {args.conns} connections in {elapsed:.2f} s: "
        f"{user:.2f} us user + {system:.2f} us system per write"
    )


if __name__ == "__main__":
    main()
