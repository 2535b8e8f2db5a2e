"""Start many kernels at once from several processes and count the ones that fail, per transport.

    python tools/kernel_start_stress.py [--processes 6] [--kernels 4] [--rounds 5]

Each round launches ``--processes`` processes at the same moment; each starts ``--kernels``
kernels concurrently, waits for them, runs ``6 * 7`` in each and shuts them down. A kernel
fails if it does not answer within ``--timeout`` seconds or its start raises. Transports:

- ``tcp``: jupyter_client's default (ports drawn by binding to port 0, then released);
- ``ipc-shared``: ipc with jupyter_client's default socket path, ``kernel-ipc`` in one shared
  working directory (what every nbgrader process started in the repository would use);
- ``ipc-private``: ``tools/ipc_kernel.py``'s ``IpcKernelManager`` (a private folder per kernel).

Not a test: it prints counts, and takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
TRANSPORTS = ("tcp", "ipc-shared", "ipc-private")


async def one_kernel(transport: str, timeout: float) -> str:
    """Start a kernel, run one cell, shut it down; return "ok" or why it failed."""
    from jupyter_client.manager import AsyncKernelManager

    if transport == "ipc-private":
        sys.path.insert(0, str(TOOLS))
        from ipc_kernel import IpcKernelManager

        manager = IpcKernelManager()
    else:
        manager = AsyncKernelManager(transport="ipc" if transport == "ipc-shared" else "tcp")
    client = None
    try:
        await asyncio.wait_for(manager.start_kernel(stderr=subprocess.DEVNULL), timeout)
        client = manager.client()
        client.start_channels()
        await client.wait_for_ready(timeout=timeout)
        reply = await client.execute_interactive("6 * 7", timeout=timeout, output_hook=lambda msg: None)
        return "ok" if reply["content"]["status"] == "ok" else f"error reply: {reply['content'].get('ename')}"
    except Exception as error:  # noqa: BLE001 (any failure is what is counted)
        return f"{type(error).__name__}: {str(error)[:80]}"
    finally:
        if client is not None:
            client.stop_channels()
        try:
            await asyncio.wait_for(manager.shutdown_kernel(now=True), timeout)
        except Exception:  # noqa: BLE001
            if manager.has_kernel:
                await manager.kill_kernel()


async def worker(transport: str, kernels: int, timeout: float) -> list[str]:
    return list(await asyncio.gather(*(one_kernel(transport, timeout) for _ in range(kernels))))


def run_round(transport: str, processes: int, kernels: int, timeout: float, cwd: Path) -> list[str]:
    command = [sys.executable, __file__, "--worker", transport, "--kernels", str(kernels), "--timeout", str(timeout)]
    children = [subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    outcomes = []
    for child in children:
        try:
            out, _ = child.communicate(timeout=4 * timeout)
            outcomes += json.loads(out.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError):
            child.kill()
            child.communicate()
            outcomes += ["worker hung or crashed"] * kernels
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--kernels", type=int, default=4, help="kernels started at once by each process")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for one kernel to start and answer")
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    parser.add_argument("--worker", choices=TRANSPORTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(args.worker, args.kernels, args.timeout))))
        return
    for transport in args.transports:
        start, outcomes = time.perf_counter(), []
        with tempfile.TemporaryDirectory() as cwd:  # one shared working directory per transport
            for _ in range(args.rounds):
                outcomes += run_round(transport, args.processes, args.kernels, args.timeout, Path(cwd))
        failures = [o for o in outcomes if o != "ok"]
        reasons = sorted({o for o in failures})[:3]
        print(
            f"{transport:12s} {len(failures):3d} failed of {len(outcomes)} kernels "
            f"({args.processes} processes x {args.kernels} at once, {args.rounds} rounds, "
            f"{time.perf_counter() - start:.0f} s){'  e.g. ' + '; '.join(reasons) if reasons else ''}",
            flush=True,
        )


if __name__ == "__main__":
    main()
