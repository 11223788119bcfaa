"""What the benchmark scripts share: starting a release `lakehouse serve` on a free loopback
port and stopping it. Imported by bench/*/bench.py (each adds bench/ to sys.path)."""
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(fn, runs=3):
    """The median of `runs` timed calls of `fn` after one untimed (warm-up), in ms."""
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lakehouse(binary, storage, log, args=(), prefix=(), command="serve", env=None):
    """Starts `binary COMMAND` (`serve`, or `worker`) over `storage` with extra `args` (run
    under `prefix`, e.g. a profiler; `env` added to the environment), output to `log`; waits up
    to 60 s for the port. Returns (process, grpc URL)."""
    port = free_port()
    proc = subprocess.Popen(
        [*prefix, binary, command, "--listen", f"127.0.0.1:{port}", "--storage", str(storage),
         *args],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"grpc://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("lakehouse did not start")


def stop_lakehouse(proc, prefixed=False, timeout=120):
    """SIGTERM to the server (to its child when started under a prefix) and waits for it."""
    if prefixed:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        os.kill(int(children[0]), 15)
    else:
        proc.terminate()
    proc.wait(timeout=timeout)
