#!/usr/bin/env python3
"""How fast a pushed config goes live, and what each cluster costs.

For N in 1, 1,000 and 10,000 (BENCH_CP_SIZES overrides), portway-cp serves
a directory whose one file holds N static clusters (one endpoint each) and
a listener routing to the first; a gateway (one worker) connects. Measured,
median of BENCH_CP_ROUNDS (default 3) rounds, each a fresh cp + gateway:

- gateway apply time: from the push arriving at the gateway to "live on
  every worker" (the gateway's own log line: per-resource checks, build,
  swap, workers caught up);
- end to end: from the file being written to the gateway's Applied as
  portway-cp logs it (adds portway-cp's poll, parse and the transfer;
  portway-cp polls every 20 ms here);
- RSS per cluster: (gateway RSS with N clusters - RSS with none) / N, after
  the push is live.

Prints a table and writes bench/results/control-plane-<time>.json. Needs
build/bin/portway and build/bin/portway-cp.
"""

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("PORTWAY_BIN", ROOT / "build/bin/portway"))
CP_BIN = Path(os.environ.get("PORTWAY_CP_BIN", BIN.parent / "portway-cp"))
SIZES = [int(x) for x in os.environ.get("BENCH_CP_SIZES", "1,1000,10000").split(",")]
ROUNDS = int(os.environ.get("BENCH_CP_ROUNDS", "3"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resources_yaml(n):
    lines = ["clusters:"]
    for i in range(n):
        lines.append(f"  - {{ name: c{i}, endpoints: [127.0.0.1:{20000 + i % 1000}] }}")
    lines += ["listeners:",
              "  - name: edge",
              f"    address: 127.0.0.1:{free_port()}",
              "    routes: [{ match: { prefix: / }, cluster: c0 }]"]
    return "\n".join(lines) + "\n"


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise RuntimeError(f"timed out waiting for {what}")


def stamp(line):
    # spdlog "[2026-11-22 04:04:14.408] ..." -> seconds since the epoch
    m = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\]", line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() if m else None


def one_round(n):
    tmp = Path(tempfile.mkdtemp(prefix="portway-cpbench-"))
    res = tmp / "resources"
    res.mkdir()
    cp_port = free_port()
    cp_log = open(tmp / "cp.log", "wb")
    cp = subprocess.Popen([str(CP_BIN), "--listen", f"127.0.0.1:{cp_port}", "--config-dir",
                           str(res), "--poll-ms", "20"], stdout=cp_log, stderr=subprocess.STDOUT)
    gw_conf = tmp / "gw.yaml"
    gw_conf.write_text(f"admin: {{ address: 127.0.0.1:0 }}\naccess_log: {{ path: \"off\" }}\n"
                       f"control_plane: {{ address: 127.0.0.1:{cp_port}, node_id: bench }}\n")
    gw_log = open(tmp / "gw.log", "wb")
    gw = subprocess.Popen([str(BIN), "-c", str(gw_conf), "--workers", "1"], stdout=gw_log,
                          stderr=subprocess.STDOUT)
    try:
        # Connected and in sync (the first, empty push) before measuring.
        wait_for(lambda: "push 1 applied" in (tmp / "cp.log").read_text(), 15, "first sync")
        time.sleep(0.3)
        base_rss = rss_kb(gw.pid)
        tmp_file = res / ".main.tmp"
        tmp_file.write_text(resources_yaml(n))
        written = time.time()
        os.replace(tmp_file, res / "main.yaml")
        line = wait_for(lambda: next((l for l in (tmp / "gw.log").read_text().splitlines()
                                      if re.search(r"push 2: \d+ change\(s\) live", l)), None),
                        120, "push 2 live")
        gateway_ms = float(re.search(r"in ([\d.]+)ms", line).group(1))
        cp_line = wait_for(lambda: next((l for l in (tmp / "cp.log").read_text().splitlines()
                                         if "push 2 applied" in l), None), 30, "Applied 2")
        end_to_end_ms = (stamp(cp_line) - written) * 1000
        rejected = "rejected" in (tmp / "cp.log").read_text()
        time.sleep(0.3)
        rss = rss_kb(gw.pid)
        return {"gateway_apply_ms": gateway_ms, "end_to_end_ms": end_to_end_ms,
                "rss_kb_before": base_rss, "rss_kb_after": rss,
                "rss_bytes_per_cluster": (rss - base_rss) * 1024 / n if n else 0,
                "any_rejected": rejected}
    finally:
        for p in (gw, cp):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        cp_log.close()
        gw_log.close()


def main():
    for b in (BIN, CP_BIN):
        if not b.exists():
            sys.exit(f"control_plane.py: {b} not found (make build)")
    results = {}
    for n in SIZES:
        rounds = [one_round(n) for _ in range(ROUNDS)]
        med = {k: statistics.median(r[k] for r in rounds)
               for k in ("gateway_apply_ms", "end_to_end_ms", "rss_bytes_per_cluster")}
        results[n] = {"rounds": rounds, "median": med}
        print(f"control-plane bench: {n} cluster(s): gateway apply {med['gateway_apply_ms']:.1f} ms, "
              f"end to end {med['end_to_end_ms']:.1f} ms, "
              f"RSS {med['rss_bytes_per_cluster']:.0f} B/cluster", flush=True)
    print()
    print("| clusters | gateway: push to live on every worker | file write to Applied (incl. 20 ms poll) | gateway RSS per cluster |")
    print("|---:|---:|---:|---:|")
    for n, r in results.items():
        m = r["median"]
        per = f"{m['rss_bytes_per_cluster']:,.0f} B" if n >= 1000 else "n/a (too few to divide)"
        print(f"| {n:,} | {m['gateway_apply_ms']:,.1f} ms | {m['end_to_end_ms']:,.1f} ms | {per} |")
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    name = out / f"control-plane-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}.json"
    name.write_text(json.dumps({"sizes": SIZES, "rounds": ROUNDS, "results": results}, indent=1))
    print(f"\nraw numbers: {name.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
