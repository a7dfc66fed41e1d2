#!/usr/bin/env python3
"""What active health checking costs the gateway.

BENCH_HC_HOSTS hosts (default 10,000: BENCH_HC_CLUSTERS clusters of equal
size, default 100) are checked every BENCH_HC_INTERVAL (default 5s) by a
gateway with one worker. The hosts are nginx listening on as many ports as
a cluster has hosts on 127.0.0.1 (each cluster lists the same ports: every
host is its own Host object, session, timer and connection, as with
distinct machines). For each kind in BENCH_HC_KINDS (default http,tcp), the
gateway runs BENCH_HC_SECONDS (default 60 s) after two intervals of warm-up;
measured from /proc: the gateway's CPU time (user + system) over the window
as a percentage of one core, the same for a gateway with the same clusters
and no checks (the baseline, subtracted), nginx's CPU (the probes' other
end), probes per second (from portway_upstream_health_checks_total) and the
gateway's RSS with and without checks.

Prints a table and writes bench/results/health-checks-<time>.json. Needs
build/bin/portway (a release build) and nginx.
"""

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("PORTWAY_BIN", ROOT / "build/bin/portway"))
HOSTS = int(os.environ.get("BENCH_HC_HOSTS", "10000"))
CLUSTERS = int(os.environ.get("BENCH_HC_CLUSTERS", "100"))
INTERVAL = float(os.environ.get("BENCH_HC_INTERVAL", "5"))
SECONDS = float(os.environ.get("BENCH_HC_SECONDS", "60"))
KINDS = os.environ.get("BENCH_HC_KINDS", "http,tcp").split(",")
TICK = os.sysconf("SC_CLK_TCK")


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def start_nginx(tmp, ports):
    conf = tmp / "nginx.conf"
    listens = "\n".join(f"    listen 127.0.0.1:{p} backlog=4096;" for p in ports)
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
worker_rlimit_nofile 40000;
events {{ worker_connections 30000; }}
http {{
  access_log off;
  keepalive_timeout 300s;
  keepalive_requests 1000000;
  server {{
{listens}
    location / {{ return 200 "ok\\n"; }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    if proc.poll() is not None:
        sys.exit(f"nginx did not start; see {tmp}/nginx.err")
    return proc


def gateway_config(tmp, ports, kind, admin_port):
    per = HOSTS // CLUSTERS
    lines = ["admin: { address: 127.0.0.1:%d }" % admin_port,
             "access_log: { path: /dev/null }",
             "listeners:",
             f"  - name: edge",
             f"    address: 127.0.0.1:{free_ports(1)[0]}",
             "    routes: [{ match: { prefix: / }, cluster: c0 }]",
             "clusters:"]
    check = ""
    if kind == "http":
        check = f"health_checks: [{{ interval: {int(INTERVAL * 1000)}ms, http: {{ path: /hc }} }}], "
    elif kind == "tcp":
        check = f"health_checks: [{{ interval: {int(INTERVAL * 1000)}ms, tcp: {{}} }}], "
    endpoints = ", ".join(f"127.0.0.1:{p}" for p in ports[:per])
    for c in range(CLUSTERS):
        lines.append(f"  - {{ name: c{c}, {check}endpoints: [{endpoints}] }}")
    path = tmp / f"portway-{kind}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def stat_total(admin_port, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats", timeout=10).read()
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def haproxy_config(tmp, ports, kind, stats_port):
    per = HOSTS // CLUSTERS
    inter = int(INTERVAL * 1000)
    lines = ["global", "  maxconn 4000", "  nbthread 1",
             "defaults", "  mode http", "  timeout connect 1s", "  timeout client 5s",
             "  timeout server 5s", "  timeout check 1s",
             f"frontend stats", f"  bind 127.0.0.1:{stats_port}", "  stats enable",
             "  stats uri /stats", "  default_backend c0"]
    for c in range(CLUSTERS):
        lines.append(f"backend c{c}")
        if kind == "http":
            lines.append("  option httpchk GET /hc")
        # Checks spread over the interval as Portway's are (spread-checks
        # is global; HAProxy spreads the first checks of a backend itself).
        for i, p in enumerate(ports[:per]):
            lines.append(f"  server s{i} 127.0.0.1:{p} check inter {inter}ms fall 3 rise 2")
    path = tmp / f"haproxy-{kind}.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_haproxy(tmp, ports, kind):
    """HAProxy checking the same hosts the same way: CPU over the window."""
    stats_port = free_ports(1)[0]
    config = haproxy_config(tmp, ports, kind, stats_port)
    proc = subprocess.Popen(["haproxy", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp / f"haproxy-{kind}.log", "w"))
    try:
        time.sleep(2 * INTERVAL)
        if proc.poll() is not None:
            sys.exit(f"haproxy exited ({proc.returncode}); see {tmp}/haproxy-{kind}.log")
        cpu0 = cpu_seconds([proc.pid])
        t0 = time.monotonic()
        time.sleep(SECONDS)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds([proc.pid]) - cpu0
        return {"kind": f"haproxy {kind}", "cpu_seconds": cpu, "elapsed": elapsed,
                "core_percent": 100.0 * cpu / elapsed, "rss_kb": rss_kb(proc.pid)}
    finally:
        stop(proc)


def run_gateway(tmp, ports, kind):
    admin_port = free_ports(1)[0]
    config = gateway_config(tmp, ports, kind, admin_port)
    log = open(tmp / f"portway-{kind}.log", "w")
    proc = subprocess.Popen([str(BIN), "-c", str(config), "--workers", "1"], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=2)
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    sys.exit(f"gateway did not start; see {tmp}/portway-{kind}.log")
                time.sleep(0.2)
        time.sleep(2 * INTERVAL)  # every host probed at least once
        if proc.poll() is not None:
            sys.exit(f"gateway exited ({proc.returncode}); see {tmp}/portway-{kind}.log")
        checks0 = stat_total(admin_port, "portway_upstream_health_checks_total")
        cpu0 = cpu_seconds([proc.pid])
        t0 = time.monotonic()
        time.sleep(SECONDS)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds([proc.pid]) - cpu0
        checks = stat_total(admin_port, "portway_upstream_health_checks_total") - checks0
        unhealthy = HOSTS - stat_total(admin_port, "portway_upstream_hosts_healthy")
        return {"kind": kind, "cpu_seconds": cpu, "elapsed": elapsed,
                "core_percent": 100.0 * cpu / elapsed, "probes_per_second": checks / elapsed,
                "rss_kb": rss_kb(proc.pid), "unhealthy_hosts": unhealthy}
    finally:
        stop(proc)
        log.close()


def main():
    # 10,000 checked connections on each side, and HAProxy's own count.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, hard)), hard))
    if not BIN.exists():
        sys.exit(f"{BIN} not built")
    if shutil.which("nginx") is None:
        sys.exit("needs nginx: apt-get install -y nginx")
    tmp = Path(tempfile.mkdtemp(prefix="portway-bench-hc-"))
    per = HOSTS // CLUSTERS
    ports = free_ports(per)
    nginx = start_nginx(tmp, ports)
    nginx_pids = [nginx.pid] + children(nginx.pid)
    results = {"hosts": per * CLUSTERS, "clusters": CLUSTERS, "interval_s": INTERVAL,
               "seconds": SECONDS, "runs": []}
    try:
        for kind in ["none"] + KINDS:
            n0 = cpu_seconds(nginx_pids)
            r = run_gateway(tmp, ports, kind)
            r["nginx_core_percent"] = 100.0 * (cpu_seconds(nginx_pids) - n0) / r["elapsed"]
            results["runs"].append(r)
            print(f"{kind}: {r}", file=sys.stderr)
        if shutil.which("haproxy") is not None and os.environ.get("BENCH_HC_HAPROXY", "1") != "0":
            for kind in KINDS:
                r = run_haproxy(tmp, ports, kind)
                results["haproxy"] = results.get("haproxy", []) + [r]
                print(f"haproxy {kind}: {r}", file=sys.stderr)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.kill()
    base = results["runs"][0]
    print(f"\nActive health checks: {results['hosts']:,} hosts ({CLUSTERS} clusters), "
          f"every {INTERVAL:g}s, one worker; {SECONDS:g}s measured after 2 intervals\n")
    print("| check | gateway CPU (% of one core) | minus no-check baseline | probes/s "
          "| unhealthy hosts | gateway RSS | RSS over baseline | nginx CPU |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(f"| {r['kind']} | {r['core_percent']:.2f} % | "
              f"{r['core_percent'] - base['core_percent']:.2f} % | "
              f"{r['probes_per_second']:.0f} | {r['unhealthy_hosts']:.0f} | "
              f"{r['rss_kb'] / 1024:.1f} MiB | {(r['rss_kb'] - base['rss_kb']) / 1024:.1f} MiB | "
              f"{r['nginx_core_percent']:.2f} % |")
    for r in results.get("haproxy", []):
        kind = r["kind"].split()[1]
        ours = next(x for x in results["runs"] if x["kind"] == kind)
        print(f"\nHAProxy {kind} checks of the same hosts: {r['core_percent']:.2f} % of one core "
              f"(RSS {r['rss_kb'] / 1024:.1f} MiB); Portway / HAProxy = "
              f"{(ours['core_percent'] - base['core_percent']) / r['core_percent']:.2f}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out / f"health-checks-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
