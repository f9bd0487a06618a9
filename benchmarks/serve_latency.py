"""Latency of the page's /api/sample under 8 concurrent clients: this server against another
version of zoo/web/serve.py (e.g. the one before a change), in alternating rounds of one run.

    python benchmarks/serve_latency.py RUN --baseline OLD_SERVE.py [--rounds 6] [--out FILE.md]

Each server runs in its own process (`--serve` mode below) on the same trained run; each
round sends CLIENTS x REQUESTS requests to one server, then the same to the other.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

CLIENTS = 8
REQUESTS = 40  # per client and round


def serve(run: str, module_path: str) -> None:
    """Serve RUN with the server class of `module_path` (a copy of zoo/web/serve.py); print the URL."""
    from zoo.web.generation import PageGenerator
    from zoo.core.plugin_manager import default_registry
    from zoo.evaluation.trained_run import Run

    spec = importlib.util.spec_from_file_location("serve_under_test", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loaded = Run.load(Path(run), default_registry())
    generator = PageGenerator(loaded.experiment, loaded.graphdef, loaded.params, loaded.step)
    generator.warm_up()
    server = module.make_server(generator, port=0)
    print(server.url, flush=True)
    server.serve_forever()


def one_round(url: str) -> list[float]:
    """Seconds of each request of CLIENTS clients sending REQUESTS requests each."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        for number in range(REQUESTS):
            body = json.dumps({"text": "2026", "seed": index * REQUESTS + number}).encode()
            request = urllib.request.Request(
                url + "api/sample", data=body, headers={"Content-Type": "application/json"}
            )
            began = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as answer:
                answer.read()
            with lock:
                latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--baseline", required=True, help="the other zoo/web/serve.py to compare with")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", help="write the table here (markdown)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.run, args.serve)
    servers = {"this": str(Path(__file__).resolve().parent.parent / "zoo" / "serve.py"), "baseline": args.baseline}
    processes, urls = {}, {}
    try:
        for name, path in servers.items():
            processes[name] = subprocess.Popen(
                [sys.executable, __file__, args.run, "--baseline", args.baseline, "--serve", path],
                stdout=subprocess.PIPE,
                text=True,
            )
            urls[name] = processes[name].stdout.readline().strip()
        for url in urls.values():
            one_round(url)  # warm: first connections, caches
        latencies: dict[str, list[float]] = {name: [] for name in servers}
        for number in range(args.rounds):
            for name in servers if number % 2 == 0 else list(reversed(servers)):
                latencies[name] += one_round(urls[name])
    finally:
        for process in processes.values():
            process.terminate()
    rows = {
        name: {q: float(np.percentile(values, q)) * 1e3 for q in (50, 90, 99)} for name, values in latencies.items()
    }
    lines = [
        f"/api/sample ('2026'), {CLIENTS} concurrent clients, {args.rounds} alternating rounds of {CLIENTS * REQUESTS} requests each",
        "",
        "| server | p50 ms | p90 ms | p99 ms | requests |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r[50]:.1f} | {r[90]:.1f} | {r[99]:.1f} | {len(latencies[name])} |" for name, r in rows.items()
    ]
    lines += ["", f"p99 this / baseline: {rows['this'][99] / rows['baseline'][99]:.3f}"]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
