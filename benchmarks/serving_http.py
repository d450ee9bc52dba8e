"""Endpoint speed over HTTP on 127.0.0.1 beside its floor, and a bounded load test (issues 6 and 15).

    uv run python benchmarks/serving_http.py [--config PATH] [--requests 1000] [--duration 10]
                                             [--batches 50] [--load-seconds 30] [--concurrency 32]
                                             [--rounds 5]

Needs a trained workdir (``uv run churn demo`` or ``uv run churn run`` first). Starts two servers side
by side: churnwarn (``serving.server.running_server``) and its floor, bare BentoML with the same
``serving.workers`` doing only the champion's ``predict`` + ``pred_contrib`` on the rows asked for
(``benchmarks/_serving_floor.py``). Both are measured in the same run, taking turns phase by phase:
- concurrency 1 on a fresh server: ``--requests`` sequential single-id requests, p50 / p99;
- concurrency ``--concurrency`` for ``--duration`` s, in ``--rounds`` turns with the other server:
  warnings/s, p50 / p99, and the CPU time of the server's process tree per warning;
- concurrency 1 again right after that burst (a learnt batching wait would show here);
- a batch of 100 ids per request, ``--batches`` sequential requests, in ``--rounds`` turns too.
Then the ratios to the floor against issue 15's targets, and churnwarn alone in a load test
(``--load-seconds`` at ``--concurrency``, every non-200 or per-item error counted, resident memory of
its process tree sampled each second). The client is one lean asyncio HTTP/1.1 client with
keep-alive connections, on the same cores as the servers. Writes docs/benchmarks/serving_http.md
(benchmarks/_report.py); exits 1 if the load test saw an error or memory grew > 10% after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _report import md_table, write_report  # noqa: E402

from core.config import load_settings  # noqa: E402
from serving.server import running_server  # noqa: E402

FLOOR_SERVICE = "benchmarks._serving_floor:ModelFloor"


@dataclass(frozen=True)
class Target:
    """A server under test: its routes for one id and for many, and how their bodies look."""

    name: str
    single: str
    batch: str
    single_key: str
    batch_key: str

    def body(self, ids: list[str]) -> tuple[bytes, bytes]:
        if len(ids) == 1:
            return self.single.encode(), json.dumps({self.single_key: ids[0]}).encode()
        return self.batch.encode(), json.dumps({self.batch_key: ids}).encode()


CHURNWARN = Target("churnwarn", "/warn/subscriber", "/warn", "subscriber_id", "subscriber_ids")
FLOOR = Target("floor", "/predict", "/predict_many", "subscriber_id", "subscriber_ids")


class Connection:
    """One keep-alive HTTP/1.1 connection: a POST, then its status and body (by Content-Length)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, path: bytes, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        at = head.lower().index(b"content-length:") + 15
        length = int(head[at : head.index(b"\r\n", at)])
        return int(head[9:12]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def errors_in(status: int, data: bytes) -> int:
    """1 for a non-200; else the number of items answered with an error."""
    if status != 200:
        return 1
    return data.count(b'"error":"') + data.count(b'"error": "')


@dataclass
class Phase:
    """Latencies (s), errors, wall time and server CPU seconds of one measurement."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    per_request: int = 1

    def ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies) * 1000, q))

    @property
    def per_s(self) -> float:
        return len(self.latencies) * self.per_request / self.wall

    @property
    def cpu_ms_per_warning(self) -> float:
        return self.cpu * 1000 / (len(self.latencies) * self.per_request)


def tree(port: int) -> psutil.Process:
    """The ``bentoml serve`` process listening on ``port`` (its children are the workers)."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if any("bentoml" in c for c in cmd[:2]) and str(port) in cmd:
            return p
    raise RuntimeError(f"no bentoml process for port {port}")


def tree_cpu(root: psutil.Process) -> float:
    """User + system CPU seconds of ``root`` and its children so far."""
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


async def run_phase(
    port: int,
    target: Target,
    ids: list[str],
    concurrency: int,
    *,
    n: int = 0,
    seconds: float = 0.0,
    k: int = 1,
) -> Phase:
    """``n`` requests (or ``seconds`` of them) of ``k`` random ids each, from ``concurrency`` connections.

    The connections are opened one at a time, each with a first (unmeasured) request, as a client's
    pool grows. Opened all at once, they queue before either worker wakes and whichever wakes first
    accepts them all (seen: 32/0 and 31/1 splits between the 2 workers, on either server), so the
    burst measured the split, not the server."""
    phase, rng = Phase(per_request=k), random.Random(7)
    conns = []
    for _ in range(concurrency):
        conns.append(await Connection.open(port))
        await conns[-1].post(*target.body(rng.sample(ids, k)))
    stop, left = time.perf_counter() + seconds, [n]

    async def worker(conn: Connection) -> None:
        while (left[0] > 0) if n else (time.perf_counter() < stop):
            left[0] -= 1
            path, body = target.body(rng.sample(ids, k))
            t0 = time.perf_counter()
            status, data = await conn.post(path, body)
            phase.latencies.append(time.perf_counter() - t0)
            phase.errors += errors_in(status, data)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    phase.wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    return phase


def measure(port: int, target: Target, ids: list[str], concurrency: int, root=None, **kw) -> Phase:
    """:func:`run_phase`, with the server tree's CPU time over it when ``root`` is given."""
    before = tree_cpu(root) if root else 0.0
    phase = asyncio.run(run_phase(port, target, ids, concurrency, **kw))
    phase.cpu = tree_cpu(root) - before if root else 0.0
    return phase


PHASES = ("c1_fresh", "burst", "c1_after_burst", "batch100")


def side_by_side(ports: dict[str, int], ids: list[str], args) -> dict[str, dict[str, Phase]]:
    """Every phase on both servers, taking turns; the c=1 after a burst right after that burst."""
    targets = {"churnwarn": CHURNWARN, "floor": FLOOR}
    roots = {name: tree(port) for name, port in ports.items()}
    res: dict[str, dict[str, Phase]] = {name: {} for name in ports}
    for name, port in ports.items():  # warm-up: imports, caches, first model calls
        measure(port, targets[name], ids, 1, n=300)
        measure(port, targets[name], ids, 1, n=20, k=100)
    for name, port in ports.items():
        res[name]["c1_fresh"] = measure(port, targets[name], ids, 1, n=args.requests)
    bursts: dict[str, list[Phase]] = {name: [] for name in ports}
    for r in range(args.rounds):  # short bursts in turn: a change of the machine's load hits both
        for name, port in ports.items():
            bursts[name].append(
                measure(
                    port,
                    targets[name],
                    ids,
                    args.concurrency,
                    roots[name],
                    seconds=args.duration / args.rounds,
                )
            )
            if r == args.rounds - 1:
                res[name]["c1_after_burst"] = measure(port, targets[name], ids, 1, n=args.requests)
    for name, phases in bursts.items():
        res[name]["burst"] = _joined(phases)
    batches: dict[str, list[Phase]] = {name: [] for name in ports}
    for r in range(args.rounds):  # in turns too: a 100-id batch takes 30-200 ms as the load moves
        n = args.batches // args.rounds + (r < args.batches % args.rounds)
        for name, port in ports.items():
            batches[name].append(measure(port, targets[name], ids, 1, n=n, k=100))
    for name, phases in batches.items():
        res[name]["batch100"] = _joined(phases, per_request=100)
    return res


def _joined(phases: list[Phase], per_request: int = 1) -> Phase:
    """One phase of the turns a measurement was cut into."""
    return Phase(
        [x for p in phases for x in p.latencies],
        sum(p.errors for p in phases),
        sum(p.wall for p in phases),
        sum(p.cpu for p in phases),
        per_request,
    )


def load_test(port: int, ids: list[str], concurrency: int, seconds: float) -> tuple[Phase, dict]:
    """churnwarn at ``concurrency`` for ``seconds``, its tree's memory sampled each second."""
    root, samples, done = tree(port), [], threading.Event()

    def sample() -> None:
        t0 = time.perf_counter()
        while not done.is_set():
            samples.append((time.perf_counter() - t0, tree_rss(root)))
            done.wait(1.0)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        phase = measure(port, CHURNWARN, ids, concurrency, seconds=seconds)
    finally:
        done.set()
        th.join()
    rss = np.array([s for _, s in samples], dtype=float)
    tenth = max(1, len(rss) // 6)  # the first ~10 s: warm-up
    mem = {
        "start": rss[tenth] / 2**20,
        "end": rss[-1] / 2**20,
        "max": rss.max() / 2**20,
        "growth": float(rss[-1] / rss[tenth] - 1),
        "late_growth": float(rss[-1] / rss[len(rss) // 2] - 1),
        "series": [(t, r / 2**20) for t, r in samples if int(t) % 10 == 0 or t == samples[-1][0]],
    }
    return phase, mem


LABELS = {
    "c1_fresh": "single id, concurrency 1, fresh server",
    "burst": "single id, concurrency {c}",
    "c1_after_burst": "single id, concurrency 1, right after the burst",
    "batch100": "batch of 100 ids, concurrency 1",
}


def phase_table(res: dict[str, dict[str, Phase]], concurrency: int) -> str:
    rows = []
    for key in PHASES:
        for name in ("churnwarn", "floor"):
            p = res[name][key]
            cpu = f"{p.cpu_ms_per_warning:.2f}" if p.cpu else ""
            rows.append(
                (
                    LABELS[key].format(c=concurrency),
                    name,
                    f"{len(p.latencies):,}",
                    p.errors,
                    f"{p.ms(50):.1f}",
                    f"{p.ms(99):.1f}",
                    f"{p.per_s:,.0f}",
                    cpu,
                )
            )
    headers = ["measure", "server", "requests", "errors", "p50 ms", "p99 ms", "warnings/s", "CPU ms/warning"]
    return md_table(headers, rows, "llrrrrrr")


def targets_table(res: dict[str, dict[str, Phase]]) -> str:
    """Issue 15's targets, each with its figure and whether this run meets it."""
    cw, fl = res["churnwarn"], res["floor"]
    checks = [
        (
            "c=32 warnings/s vs the floor",
            cw["burst"].per_s / fl["burst"].per_s,
            ">= 0.8x",
            lambda r: r >= 0.8,
        ),
        (
            "server CPU per warning vs the floor",
            cw["burst"].cpu_ms_per_warning / fl["burst"].cpu_ms_per_warning,
            "<= 1.3x",
            lambda r: r <= 1.3,
        ),
        (
            "batch of 100 ids p50 vs the floor",
            cw["batch100"].ms(50) / fl["batch100"].ms(50),
            "<= 1.3x",
            lambda r: r <= 1.3,
        ),
        (
            "c=1 p50 after the burst vs fresh",
            cw["c1_after_burst"].ms(50) / cw["c1_fresh"].ms(50),
            "within 20%",
            lambda r: abs(r - 1) <= 0.2,
        ),
    ]
    rows = [(what, f"{r:.2f}x", want, "met" if ok(r) else "NOT met") for what, r, want, ok in checks]
    for key in ("c1_fresh", "c1_after_burst"):
        p99 = cw[key].ms(99)
        rows.append((f"p99, {LABELS[key]}", f"{p99:.1f} ms", "< 20 ms", "met" if p99 < 20 else "NOT met"))
    return md_table(["target (churnwarn)", "this run", "target", ""], rows, "lrll")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=None, help="a trained workdir's config")
    ap.add_argument("--requests", type=int, default=1000, help="sequential requests per concurrency-1 phase")
    ap.add_argument("--duration", type=float, default=20, help="seconds of the burst at --concurrency")
    ap.add_argument("--batches", type=int, default=50, help="sequential requests of 100 ids")
    ap.add_argument("--load-seconds", type=float, default=30, help="seconds of churnwarn's load test")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="the burst and the batches are cut in this many turns per server",
    )
    args = ap.parse_args()
    settings = load_settings(args.config)
    t = pd.read_parquet(settings.feature_table, columns=["subscriber_id", "event_timestamp"])
    ids = t.loc[t["event_timestamp"] == t["event_timestamp"].max(), "subscriber_id"].tolist()
    floor_log = settings.reports_dir / "server-floor.log"
    with (
        running_server(settings) as url,
        running_server(settings, bento=FLOOR_SERVICE, log_file=floor_log) as floor,
    ):
        ports = {"churnwarn": int(url.rsplit(":", 1)[1]), "floor": int(floor.rsplit(":", 1)[1])}
        load_before = psutil.getloadavg()
        res = side_by_side(ports, ids, args)
        load, mem = load_test(ports["churnwarn"], ids, args.concurrency, args.load_seconds)
    report(settings, ids, args, res, load, mem, load_before)
    if load.errors or mem["growth"] > 0.10:
        print("load test FAILED: errors or memory growth > 10%", file=sys.stderr)
        sys.exit(1)


def report(settings, ids, args, res, load: Phase, mem: dict, load_before) -> None:
    write_report(
        __file__,
        "Endpoint over HTTP, beside its floor",
        [
            f"churnwarn: single ids to `{CHURNWARN.single}`, batches to `{CHURNWARN.batch}`; {len(ids):,} "
            f"subscribers of the newest snapshot in the online store ({settings.feast.online_store.type}). "
            "Floor: bare BentoML (`benchmarks/_serving_floor.py`), the champion's `predict` + "
            f"`pred_contrib` on the rows asked for, no store, no reasons. Both with `serving.workers: "
            f"{settings.serving.workers}`, measured in the same run, taking turns phase by phase; one "
            "asyncio client (raw HTTP/1.1, keep-alive) on the same cores. CPU: user + system time of the "
            "server's process tree over the burst, per warning.",
            f"Load on the machine: load average {load_before[0]:.1f} / {load_before[1]:.1f} / "
            f"{load_before[2]:.1f} (1 / 5 / 15 min) when the measurement began, on "
            f"{psutil.cpu_count()} cores shared with other jobs: absolute figures move with it, the ratios "
            f"of one run are what the targets judge. The bursts take turns in {args.rounds} rounds "
            f"of {args.duration / args.rounds:.0f} s per server, the batches of 100 ids in {args.rounds} "
            f"rounds of about {args.batches / args.rounds:.0f} requests per server.",
            phase_table(res, args.concurrency),
            targets_table(res),
            f"Load test, churnwarn alone, {args.load_seconds:.0f} s at concurrency {args.concurrency}: "
            f"{len(load.latencies):,} requests, {load.errors} errors, p50 {load.ms(50):.1f} ms, p99 "
            f"{load.ms(99):.1f} ms, {load.per_s:,.0f} warnings/s. Memory (server process tree RSS): "
            f"{mem['start']:.0f} MiB after warm-up, {mem['end']:.0f} MiB at the end, max {mem['max']:.0f} MiB "
            f"({mem['growth']:+.1%}; second half {mem['late_growth']:+.1%}). Over the test: "
            + ", ".join(f"{t:.0f} s {m:.0f} MiB" for t, m in mem["series"])
            + ".",
        ],
    )


if __name__ == "__main__":
    main()
