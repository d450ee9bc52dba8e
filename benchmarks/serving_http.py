"""Endpoint speed over HTTP on 127.0.0.1, and a bounded load test: the figures issue 6 asks for.

    uv run python benchmarks/serving_http.py [--config PATH] [--requests 2000] [--duration 20]
                                             [--load-seconds 60] [--concurrency 32]

Needs a trained workdir (``uv run churn demo`` or ``uv run churn run`` first). Starts the real BentoML
server (``serving.server.running_server``), warms it up, then measures single-subscriber warnings
end to end (Feast online read + predict + SHAP + reasons + JSON):
- concurrency 1: ``--requests`` sequential requests, p50 / p99 / mean latency;
- concurrency ``--concurrency``: ``--duration`` seconds, p50 / p99 and throughput in warnings/s;
- a batch of 100 ids per request at concurrency 1;
- the load test: ``--load-seconds`` at ``--concurrency``, counting every non-200 and every per-item
  error as an error, sampling the server's resident memory (its whole process tree) each second.
The client runs on the same 2 cores as the server, so the figures include its share of the CPU.
Writes docs/benchmarks/serving_http.md (see benchmarks/_report.py) and prints it; exits 1 if the
load test saw an error or memory grew > 10% after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _report import md_table, write_report  # noqa: E402

from core.config import load_settings  # noqa: E402
from serving.server import running_server  # noqa: E402

SINGLE, BATCH = "/warn/subscriber", "/warn"


def server_tree(port: int) -> psutil.Process:
    """The ``bentoml serve`` process listening on ``port`` (its children are the workers)."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if any("bentoml" in c for c in cmd[:2]) and str(port) in cmd:
            return p
    raise RuntimeError(f"no bentoml process for port {port}")


def tree_rss(root: psutil.Process) -> int:
    procs = [root] + root.children(recursive=True)
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def post(client, ids: list[str]):
    """One subscriber: the single route; more: the batch route."""
    if len(ids) == 1:
        return client.post(SINGLE, json={"subscriber_id": ids[0]})
    return client.post(BATCH, json={"subscriber_ids": ids})


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def sequential(url: str, ids: list[str], n: int, per_request: int = 1) -> dict:
    lat, errors = [], 0
    with httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            r = post(c, random.sample(ids, per_request))
            lat.append(time.perf_counter() - t0)
            errors += _errors(r)
    return {
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
        "mean": statistics.fmean(lat) * 1000,
        "n": n,
        "errors": errors,
        "per_s": n * per_request / sum(lat),
    }


def _errors(r: httpx.Response) -> int:
    if r.status_code != 200:
        return 1
    body = r.json()
    return sum(1 for w in (body if isinstance(body, list) else [body]) if w.get("error"))


async def concurrent(url: str, ids: list[str], concurrency: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                r = await post(client, [random.choice(ids)])
                errors += _errors(r)
            except httpx.HTTPError:
                errors += 1
            lat.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
        "mean": statistics.fmean(lat) * 1000,
        "n": len(lat),
        "errors": errors,
        "per_s": len(lat) / wall,
    }


def load_test(url: str, ids: list[str], concurrency: int, seconds: float, root: psutil.Process) -> dict:
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        t0 = time.perf_counter()
        while not done.is_set():
            samples.append((time.perf_counter() - t0, tree_rss(root)))
            done.wait(1.0)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        res = asyncio.run(concurrent(url, ids, concurrency, seconds))
    finally:
        done.set()
        th.join()
    rss = np.array([s for _, s in samples], dtype=float)
    tenth = max(1, len(rss) // 6)  # the first ~10 s: warm-up
    res.update(
        rss_start=rss[tenth] / 2**20,
        rss_end=rss[-1] / 2**20,
        rss_max=rss.max() / 2**20,
        growth=float(rss[-1] / rss[tenth] - 1),
        series=[(t, r / 2**20) for t, r in samples if int(t) % 10 == 0 or t == samples[-1][0]],
        late_growth=float(rss[-1] / rss[len(rss) // 2] - 1),
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--config", type=Path, default=None, help="a trained workdir's config (default: configs/default.yaml)"
    )
    ap.add_argument("--requests", type=int, default=2000, help="sequential requests at concurrency 1")
    ap.add_argument("--duration", type=float, default=20, help="seconds at the given concurrency")
    ap.add_argument("--load-seconds", type=float, default=60, help="seconds of the load test")
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    settings = load_settings(args.config)
    t = pd.read_parquet(settings.feature_table, columns=["subscriber_id", "event_timestamp"])
    ids = t.loc[t["event_timestamp"] == t["event_timestamp"].max(), "subscriber_id"].tolist()
    random.seed(7)
    rows = []
    with running_server(settings) as url:
        port = int(url.rsplit(":", 1)[1])
        root = server_tree(port)
        sequential(url, ids, 300)  # warm-up: imports, caches, first SHAP explainer
        one = sequential(url, ids, args.requests)
        rows.append(("single id, concurrency 1", one))
        many = asyncio.run(concurrent(url, ids, args.concurrency, args.duration))
        rows.append((f"single id, concurrency {args.concurrency}", many))
        batch = sequential(url, ids, max(50, args.requests // 20), per_request=100)
        rows.append(("batch of 100 ids, concurrency 1", batch))
        load = load_test(url, ids, args.concurrency, args.load_seconds, root)
        rows.append((f"load test {args.load_seconds:.0f} s, concurrency {args.concurrency}", load))
    table = [
        (
            name,
            f"{r['n']:,}",
            r["errors"],
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            f"{r['mean']:.1f}",
            f"{r['per_s']:,.0f}",
        )
        for name, r in rows
    ]
    target = "met" if one["p99"] < 20 else "NOT met"
    write_report(
        __file__,
        "Endpoint over HTTP",
        [
            f"The real server at {url}, single ids to `{SINGLE}`, batches to `{BATCH}`; "
            f"{len(ids):,} subscribers in the online store ({settings.feast.online_store.type}), "
            f"`serving.workers: {settings.serving.workers}`. The client runs on the same machine.",
            md_table(
                ["measure", "requests", "errors", "p50 ms", "p99 ms", "mean ms", "warnings/s"],
                table,
                "lrrrrrr",
            ),
            f"Load test memory (server process tree RSS): {load['rss_start']:.0f} MiB after warm-up, "
            f"{load['rss_end']:.0f} MiB at the end, max {load['rss_max']:.0f} MiB ({load['growth']:+.1%}; "
            f"second half {load['late_growth']:+.1%}). Over the test: "
            + ", ".join(f"{t:.0f} s {m:.0f} MiB" for t, m in load["series"])
            + ".",
            f"Target p99 < 20 ms at concurrency 1: {target} ({one['p99']:.1f} ms).",
        ],
    )
    if load["errors"] or load["growth"] > 0.10:
        print("load test FAILED: errors or memory growth > 10%", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
