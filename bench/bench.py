#!/usr/bin/python3
"""Side-by-side benchmark of Portway, nginx and HAProxy as HTTP/1.1 reverse
proxies, plus Portway with a filter chain ("portway+chain": portway.retry +
portway.circuit_breaker, neither acting) to price the chain against the bare
proxy, plus two HTTP/2 scenarios (BENCH_H2=0 skips them): HTTP/2 clients
(h2c prior knowledge) to an HTTP/1.1 origin, and HTTP/1.1 clients to an h2c
origin (nghttpd; nginx cannot proxy plain HTTP/2, so it sits that one out).
Called by bench/run.sh (which checks the tools); see bench/README.md.

Per round, for each candidate in the order portway -> portway+chain -> nginx
-> haproxy:
  1. instructions/request: the proxy under callgrind; warm up, zero the
     counters, a fixed-count h2load run (c10), dump, Ir / requests.
  2. syscalls (and context switches)/request: perf stat on the native proxy
     around fixed-count h2load runs at 1 and 50 connections.
  3. CPU us/request: utime+stime from /proc/PID/stat around a fixed-count
     h2load run at 50 connections (also gives req/s, dashboards only).
  4. RSS/idle connection: a fresh proxy, 1,000 idle keep-alive connections.
  5. HTTP/2 downstream (portway, nginx, haproxy): instructions/request as in
     1 and CPU us/request as in 3, with h2load speaking h2c (c10, m10) to a
     proxy listening for HTTP/2; the origin leg stays HTTP/1.1.
  6. HTTP/2 upstream (portway, haproxy): the same two with the HTTP/1.1 load
     of 1 and 3 and the proxy speaking h2c to the nghttpd origin.
  7. TLS (portway, nginx, haproxy; BENCH_TLS=0 skips): one ECDSA P-256
     certificate made for the run, TLS 1.3 with X25519, no resumption.
     Instructions (callgrind) and CPU us (/proc) per handshake with a new
     connection per request, per request over HTTP/1.1 keep-alive, and per
     request over HTTP/2 (ALPN h2), all with h2load at c10.
  8. cache (portway, portway+cache, nginx+cache; BENCH_CACHE=0 skips): the
     HTTP/1.1 load of 1 and 3 against the origin's cacheable server
     (Cache-Control: max-age=3600, the same body): Portway proxying it, and
     Portway's portway.cache and nginx's proxy_cache answering it from the
     store, warmed with one request and checked to answer HITs while the
     origin counts ~no requests. Instructions/request as in 1, CPU
     us/request and req/s as in 3.
  9. workloads (portway, nginx, haproxy; BENCH_WORK=0 skips), issue 13's:
     instructions/request as in 1 for a request with 20 typical browser
     headers, for GET /svc999/x through 1 route and through 1,000 prefix
     routes (the same proxy's ratio of the two), and for a 1 MiB response
     body, whose CPU us/request is measured as in 3 (c10); RSS per idle
     connection as in 4 at 10,000 connections.
The proxy is pinned to one CPU, origin and load generator to the other.
Prints a markdown table of medians and ratios (Portway bare vs each peer;
portway+chain vs Portway bare); saves everything as JSON. BENCH_CHAIN=0 skips
portway+chain; --rows (or BENCH_ROWS) picks row groups: h1 (1-4), h2 (5-6),
tls (7), cache (8), work (9).
"""
import argparse
import hashlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CANDIDATES = ["portway", "portway+chain", "portway+cache", "nginx", "nginx+cache", "haproxy"]
PORTWAYS = {"portway": "portway.yaml", "portway+chain": "portway-chain.yaml",
            "portway+cache": "portway-cache.yaml"}  # name -> config
NGINXES = ("nginx", "nginx+cache")
CHAIN = "portway+chain"
CHAIN_FILTERS = ["portway.retry", "portway.circuit_breaker"]  # what configs/portway-chain.yaml loads
# The filters each Portway candidate's listener must run (checked through
# GET /config_dump at every start).
PORTWAY_FILTERS = {"portway": [], CHAIN: CHAIN_FILTERS, "portway+cache": ["portway.cache"]}
BODY = "0123456789" * 10  # the origin's fixed 100-byte body

# The HTTP/2 scenarios: which candidates take part and which config each one
# runs (relative to configs/). Portway's default listener already accepts
# h2c prior knowledge next to HTTP/1.1, so the downstream scenario runs the
# same portway.yaml as the HTTP/1.1 rows; nginx and HAProxy need a listener
# that speaks HTTP/2. nginx has no plain-HTTP/2 upstream (only grpc_pass),
# so it is not a candidate for the upstream scenario.
H2DOWN = "h2down"
H2UP = "h2up"
SCENARIO_CONFIGS = {
    H2DOWN: {"portway": "portway.yaml", "nginx": "nginx-h2.conf", "haproxy": "haproxy-h2.cfg"},
    H2UP: {"portway": "portway-h2up.yaml", "haproxy": "haproxy-h2up.cfg"},
}
NGINX_NO_H2_UPSTREAM = ("n/a: nginx cannot proxy to a plain HTTP/2 upstream "
                        "(grpc_pass only)")
H2_ORIGIN = "nghttpd (nghttp2-server) --no-tls, one thread, a static 100-byte file"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The TLS rows: the same three proxies, each with a TLS listener using the
# same certificate and key (made per run by make_certs()), TLS 1.3 only, the
# X25519 group only, no resumption. The client offers one cipher suite and
# one group, so every candidate must take those. One config each
# serves the three TLS loads; the origin leg is the plain HTTP/1.1 one.
TLS = "tls"
TLS_CONFIGS = {"portway": "portway-tls.yaml", "nginx": "nginx-tls.conf",
               "haproxy": "haproxy-tls.cfg"}
TLS_CIPHERSUITE = "TLS_AES_128_GCM_SHA256"
TLS_GROUP = "X25519"
TLS_CERT_DESC = ("ECDSA P-256 leaf (SAN localhost, 127.0.0.1) signed by an ECDSA P-256 "
                 "self-signed CA, both made with the openssl CLI in the run directory; "
                 "the leaf alone is served")

# The cache rows: Portway proxying the origin's cacheable server (the bare
# portway.yaml, pointed at that server), Portway with portway.cache and nginx
# with proxy_cache in front of it, each warmed so every measured request is
# a HIT. The HIT header each cache sets, and the value that means "answered
# from the store".
CACHE = "cache"
CACHE_CONFIGS = {"portway": "portway.yaml", "portway+cache": "portway-cache.yaml",
                 "nginx+cache": "nginx-cache.conf"}
CACHES = {"portway+cache": "x-portway-cache", "nginx+cache": "x-cache"}  # name -> HIT header
CACHE_PROXIED = "portway"
CACHE_PORTWAY = "portway+cache"
CACHE_NGINX = "nginx+cache"
# What the cache issue asks of the ratios of medians (read against, never
# enforced: benchmarks are not tests).
CACHE_TARGETS = {"portway+cache/portway instr_per_req": "<= 0.5",
                 "portway+cache/nginx+cache instr_per_req": "<= 1.0",
                 "portway+cache/nginx+cache req_per_s": ">= 1.0"}
CACHE_ORIGIN = ("the origin nginx's second server: return 200 with the same 100-byte body and "
                "Cache-Control: max-age=3600")

# The workload rows (issue 13): what a request costs when it carries 20
# headers, when it is routed among 1,000 prefix routes, when its response is
# 1 MiB, and what an idle connection costs among 10,000. The routes row runs
# its own config (ROUTES_CONFIGS, the routes generated into the run's
# directory by make_routes()); the others run the HTTP/1.1 rows' configs.
WORK = "work"
ROUTES = "routes"  # the scenario (config) of the 1,000-route row
ROUTES_CONFIGS = {"portway": "portway-routes.yaml", "nginx": "nginx-routes.conf",
                  "haproxy": "haproxy-routes.cfg"}
ROUTE_COUNT = 1000
ROUTE_PATH = f"/svc{ROUTE_COUNT - 1}/x"  # matches the last of the routes
BIG_BODY_PATH = "/body-1m"  # the origin's location serving the 1 MiB file
BIG_BODY_BYTES = 1 << 20
# What a browser sends for a page (Chrome's navigation headers) plus two an
# application adds: with the Host h2load writes, 20 request header fields.
WORK_HEADERS = [
    ("connection", "keep-alive"),
    ("cache-control", "max-age=0"),
    ("sec-ch-ua", '"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"'),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", '"Linux"'),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/120.0.0.0 Safari/537.36"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
               "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-user", "?1"),
    ("sec-fetch-dest", "document"),
    ("referer", "https://shop.example.com/catalog/shoes?page=2&sort=price-asc"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-language", "en-US,en;q=0.9,de;q=0.8,fr;q=0.7"),
    ("cookie", "session_id=3f9a1c2e7b4d4e0f9a8b7c6d5e4f3a2b; _ga=GA1.2.1234567890.1701234567; "
               "_gid=GA1.2.987654321.1701234567; cart=a1b2c3d4; theme=dark; lang=en-US; "
               "consent=analytics%3Dyes%26ads%3Dno"),
    ("dnt", "1"),
    ("x-requested-with", "XMLHttpRequest"),
    ("x-csrf-token", "kJ8s2nV0qL4xY7wZ1aB3cD5eF6gH9iJ0"),
]
# What issue 13 asks (read against, never enforced: benchmarks are not tests).
WORK_TARGETS = {"portway/nginx instructions per request (every row)": "<= 0.8",
                "portway/nginx work_hdr20_instr_per_req": "<= 1.0",
                "portway work_routes_vs_1": "<= 1.05",
                "portway/nginx work_idle10k_rss_bytes_per_idle_conn": "<= 1.0 (nginx ~0.5 KB)"}

ROW_GROUPS = ["h1", "h2", "tls", "cache", WORK]
# The row groups each candidate takes part in; a candidate in none of the
# selected groups is left out of the run.
CANDIDATE_ROWS = {"portway": ROW_GROUPS, CHAIN: ["h1"], "portway+cache": [CACHE],
                  "nginx": ["h1", "h2", "tls", WORK], "nginx+cache": [CACHE],
                  "haproxy": ["h1", "h2", "tls", WORK]}

# tls_*: handshakes under callgrind (tls_cg_hs) and for CPU (tls_hs), their
# warm-up, and the connections of every TLS load (tls_c); the keep-alive
# and HTTP/2 TLS loads use cg_n / cpu_n requests like the rows above.
# big_*: the 1 MiB responses' warm-up, count under callgrind and for CPU,
# and connections; idle_many: the workload rows' idle connections (quick
# runs keep 10,000: what the row is about, and opening them is cheap).
FULL = dict(warmup=5000, cg_n=20000, cg_c=10, sys_n1=10000, sys_n50=50000,
            cpu_n=100000, cpu_c=50, idle=1000, wrk_secs=10, h2_c=10, h2_m=10,
            tls_c=10, tls_hs_warmup=200, tls_cg_hs=1000, tls_hs=5000,
            big_warmup=100, big_cg_n=2000, big_cpu_n=10000, big_c=10, idle_many=10000)
QUICK = dict(warmup=1000, cg_n=5000, cg_c=10, sys_n1=2000, sys_n50=10000,
             cpu_n=20000, cpu_c=50, idle=500, wrk_secs=3, h2_c=10, h2_m=10,
             tls_c=10, tls_hs_warmup=100, tls_cg_hs=200, tls_hs=1000,
             big_warmup=20, big_cg_n=200, big_cpu_n=1000, big_c=10, idle_many=10000)

METRICS = [  # key, label, format
    ("instr_per_req", "instructions / request (callgrind, h2load c10)", "{:,.0f}"),
    ("instr_per_req_c1", "instructions / request (callgrind, h2load c1)", "{:,.0f}"),
    ("syscalls_per_req_c1", "syscalls / request (1 connection)", "{:.2f}"),
    ("syscalls_per_req_c50", "syscalls / request (50 connections)", "{:.2f}"),
    ("ctxsw_per_req_c1", "context switches / request (1 connection)", "{:.2f}"),
    ("ctxsw_per_req_c50", "context switches / request (50 connections)", "{:.3f}"),
    ("cpu_us_per_req", "proxy CPU µs / request (50 connections)", "{:.1f}"),
    ("rss_bytes_per_idle_conn", "RSS bytes / idle keep-alive connection", "{:,.0f}"),
    ("req_per_s", "req/s, 50 connections (dashboards only, noisy)", "{:,.0f}"),
]
H2DOWN_METRICS = [
    ("h2down_instr_per_req", "HTTP/2 downstream: instructions / request (callgrind, h2load h2c c10 m10)",
     "{:,.0f}"),
    ("h2down_cpu_us_per_req", "HTTP/2 downstream: proxy CPU µs / request (h2load h2c c10 m10)",
     "{:.1f}"),
    ("h2down_req_per_s", "HTTP/2 downstream: req/s, c10 m10 (dashboards only, noisy)", "{:,.0f}"),
]
H2UP_METRICS = [
    ("h2up_instr_per_req", "HTTP/2 upstream: instructions / request (callgrind, h2load HTTP/1.1 c10)",
     "{:,.0f}"),
    ("h2up_cpu_us_per_req", "HTTP/2 upstream: proxy CPU µs / request (HTTP/1.1, 50 connections)",
     "{:.1f}"),
    ("h2up_req_per_s", "HTTP/2 upstream: req/s, 50 connections (dashboards only, noisy)", "{:,.0f}"),
]
TLS_METRICS = [
    ("tls_hs_instr_per_hs", "TLS handshake: instructions / handshake (callgrind, new connection "
     "per request, c10)", "{:,.0f}"),
    ("tls_hs_cpu_us_per_hs", "TLS handshake: proxy CPU µs / handshake (new connection per "
     "request, c10)", "{:.1f}"),
    ("tls_hs_per_s", "TLS handshake: handshakes/s, c10 (dashboards only, noisy)", "{:,.0f}"),
    ("tls_ka_instr_per_req", "TLS keep-alive: instructions / request (callgrind, h2load HTTP/1.1 "
     "over TLS c10)", "{:,.0f}"),
    ("tls_ka_cpu_us_per_req", "TLS keep-alive: proxy CPU µs / request (HTTP/1.1 over TLS c10)",
     "{:.1f}"),
    ("tls_ka_req_per_s", "TLS keep-alive: req/s, HTTP/1.1 c10 (dashboards only, noisy)",
     "{:,.0f}"),
    ("tls_h2_instr_per_req", "TLS HTTP/2: instructions / request (callgrind, h2load ALPN h2 c10 "
     "m10)", "{:,.0f}"),
    ("tls_h2_cpu_us_per_req", "TLS HTTP/2: proxy CPU µs / request (ALPN h2 c10 m10)", "{:.1f}"),
    ("tls_h2_req_per_s", "TLS HTTP/2: req/s, c10 m10 (dashboards only, noisy)", "{:,.0f}"),
]
CACHE_METRICS = [
    ("cache_instr_per_req", "instructions / request (callgrind, h2load c10)", "{:,.0f}"),
    ("cache_cpu_us_per_req", "proxy CPU µs / request (50 connections)", "{:.1f}"),
    ("cache_req_per_s", "req/s, 50 connections (dashboards only, noisy)", "{:,.0f}"),
]
WORK_METRICS = [
    ("work_hdr20_instr_per_req", "20 request headers: instructions / request (callgrind, h2load "
     "c10)", "{:,.0f}"),
    ("work_route1_instr_per_req", f"1 route, GET {ROUTE_PATH}: instructions / request "
     f"(callgrind, h2load c10)", "{:,.0f}"),
    ("work_routes_instr_per_req", f"{ROUTE_COUNT:,} prefix routes, GET {ROUTE_PATH}: "
     f"instructions / request (callgrind, h2load c10)", "{:,.0f}"),
    ("work_routes_vs_1", f"{ROUTE_COUNT:,} routes / 1 route, instructions (same proxy, same "
     f"round)", "{:.3f}"),
    ("work_big_instr_per_req", "1 MiB response body: instructions / request (callgrind, h2load "
     "c10)", "{:,.0f}"),
    ("work_big_cpu_us_per_req", "1 MiB response body: proxy CPU µs / request (c10)", "{:,.0f}"),
    ("work_idle10k_rss_bytes_per_idle_conn", "RSS bytes / idle keep-alive connection, 10,000 "
     "connections", "{:,.0f}"),
]
# Rows whose cells are already a ratio within each candidate: no peer ratio.
WORK_OWN_RATIOS = ("work_routes_vs_1",)
ALL_METRICS = METRICS + H2DOWN_METRICS + H2UP_METRICS + TLS_METRICS + CACHE_METRICS + WORK_METRICS


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def slug(name):
    """A candidate name usable in file names ("portway+chain" -> "portway-chain")."""
    return name.replace("+", "-")


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = args.tmp
        os.makedirs(os.path.join(self.tmp, "tmp"), exist_ok=True)
        self.counts = QUICK if args.quick else FULL
        self.procs = []
        ncpu = os.cpu_count() or 1
        self.proxy_cpu = os.environ.get("BENCH_PROXY_CPU", "0")
        self.load_cpu = os.environ.get("BENCH_LOAD_CPU", "1" if ncpu > 1 else "0")
        self.perf_reason = self.probe_perf()
        self.origin_port = None
        self.cache_origin_port = None  # the origin's cacheable server (cache rows)
        self.h2_origin_port = None
        self.tls = None  # paths of the run's certificate files (make_certs)
        self.routes = None  # the 1,000 routes as each config spells them (make_routes)
        self.admin = {}  # portway candidate -> admin address of the last one started

    # ---------------------------------------------------------------- processes
    def spawn(self, cmd, name, cpu, stdout=None):
        out = open(os.path.join(self.tmp, f"{name}.out"), "ab") if stdout is None else stdout
        p = subprocess.Popen(["taskset", "-c", cpu] + cmd, stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=self.tmp, start_new_session=True)
        self.procs.append(p)
        with open(os.path.join(self.tmp, "pids"), "a") as f:
            f.write(f"{p.pid}\n")
        return p

    def stop(self, p, timeout=15):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p, timeout=5)

    # ------------------------------------------------------------------ helpers
    def free_port(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def render(self, template, out, **kv):
        with open(os.path.join(HERE, "configs", template)) as f:
            text = f.read()
        kv.setdefault("DIR", self.tmp)
        for k, v in kv.items():
            text = text.replace(f"@{k}@", str(v))
        path = os.path.join(self.tmp, out)
        with open(path, "w") as f:
            f.write(text)
        return path

    def tail(self, tag, lines=5):
        try:
            with open(os.path.join(self.tmp, f"{tag}.out"), errors="replace") as f:
                return " / ".join(l.strip() for l in f.read().splitlines()[-lines:])
        except OSError:
            return "(no output)"

    def http_get(self, url, timeout=2.0):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, b""
        except (OSError, ValueError):
            return None, b""

    def wait_http(self, p, url, deadline_s, what):
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if p.poll() is not None:
                raise RuntimeError(f"{what} exited with status {p.returncode}: "
                                   f"{self.tail(what)}")
            status, _ = self.http_get(url)
            if status == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what} not answering 200 at {url} after {deadline_s}s")

    def h2load(self, port, n, c, streams=None, reasonless_ok=False, tls=False,
               new_conn=False, path="/", headers=(), body_bytes=None):
        """A fixed-count h2load run: HTTP/1.1, or with `streams` HTTP/2 over
        cleartext with prior knowledge (h2load's default for http://) and that
        many concurrent streams per connection. Fails unless every request got
        a 2xx, and for HTTP/2 unless h2c was really spoken.

        `reasonless_ok`: h2load 1.52's HTTP/1.1 parser takes the status code
        from the reason-phrase callback, so a status line with an empty reason
        (`HTTP/1.1 200 `, what HAProxy writes for a response that came over
        HTTP/2, which has no reason phrase) counts as "failed" with no status
        although the response arrived whole. With this flag such a run passes
        when every request is done, none errored or timed out, no status at
        all was seen (an error HAProxy makes itself carries a reason, so it
        would be counted) and exactly n bodies of the origin's size came back.

        `tls`: https, TLS 1.3 with the pinned cipher suite and group, and ALPN
        http/1.1 (or h2 with `streams`); fails unless h2load reports exactly
        that. `new_conn`: every request says `Connection: close`, so each
        one gets a connection (and a handshake) of its own: h2load
        reconnects until n requests are done.

        `path`: what to ask for; `headers`: more request headers ("name:
        value"); `body_bytes`: fails unless the bodies of the n responses
        add up to n times that many bytes."""
        proto = ["--h1"] if streams is None else ["-m", str(streams)]
        if tls:
            proto += [f"--groups={TLS_GROUP}", f"--tls13-ciphers={TLS_CIPHERSUITE}"]
            if streams is not None:
                proto += ["--npn-list=h2"]
        if new_conn:
            proto += ["-H", "Connection: close"]
        for h in headers:
            proto += ["-H", h]
        scheme = "https" if tls else "http"
        cmd = ["taskset", "-c", self.load_cpu, "h2load"] + proto + [
            "-n", str(n), "-c", str(c), "-t", "1", f"{scheme}://127.0.0.1:{port}{path}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        out = r.stdout
        alpn = "h2c" if not tls else ("h2" if streams is not None else "http/1.1")
        if (streams is not None or tls) and not re.search(
                rf"^Application protocol: {re.escape(alpn)}$", out, re.M):
            raise RuntimeError(f"h2load: {alpn} not negotiated:\n{out}\n{r.stderr}")
        if tls:
            for want in (r"^TLS Protocol: TLSv1\.3$", rf"^Cipher: {TLS_CIPHERSUITE}$",
                         rf"^Server Temp Key: {TLS_GROUP}\b"):
                if not re.search(want, out, re.M):
                    raise RuntimeError(f"h2load: TLS parameters not as pinned ({want}):\n{out}")
        m = re.search(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", out)
        d = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored", out)
        s2 = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        if not (m and d):
            raise RuntimeError(f"h2load output not understood:\n{out}\n{r.stderr}")
        secs = float(m.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1}[m.group(2)]
        res = {"requests": n, "seconds": secs, "req_per_s": float(m.group(3))}
        ok = int(s2.group(1)) if s2 else int(d.group(3))
        data = re.search(r"^traffic: .*\((\d+)\) data$", out, re.M)
        if reasonless_ok and ok == 0 and s2 and not any(int(x) for x in s2.groups()):
            timeouts = re.search(r"(\d+) timeout", out)
            if (int(d.group(2)) == n and int(d.group(4)) == n and not int(d.group(5))
                    and not (timeouts and int(timeouts.group(1)))
                    and data and int(data.group(1)) == n * len(BODY)):
                res["status_unparsed"] = n
                return res
        if ok != n or int(d.group(4)) or int(d.group(5)):
            raise RuntimeError(f"h2load: only {ok}/{n} requests got 2xx:\n{out}")
        if body_bytes is not None and not (data and int(data.group(1)) == n * body_bytes):
            raise RuntimeError(f"h2load: the bodies are not {n} x {body_bytes} bytes:\n{out}")
        return res

    def wrk(self, port, secs, c, path="/"):
        cmd = ["taskset", "-c", self.load_cpu, "wrk", "-t", "1", "-c", str(c),
               "-d", f"{secs}s", f"http://127.0.0.1:{port}{path}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
        m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", r.stdout)
        if not m or "Non-2xx" in r.stdout or "Socket errors" in r.stdout:
            raise RuntimeError(f"wrk run failed or saw errors:\n{r.stdout}\n{r.stderr}")
        n = int(m.group(1))
        s = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
        return {"requests": n, "seconds": s, "req_per_s": n / s}

    @staticmethod
    def proc_ticks(pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)

    @staticmethod
    def cpu_times():
        res = {}
        with open("/proc/stat") as f:
            for line in f:
                if re.match(r"cpu\d+ ", line):
                    v = [int(x) for x in line.split()[1:]]
                    idle = v[3] + v[4]
                    res[line.split()[0]] = (sum(v[:8]), idle)
        return res

    def probe_perf(self):
        try:
            r = subprocess.run(["perf", "stat", "-x,", "-e",
                                "raw_syscalls:sys_enter,context-switches", "--", "true"],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        if r.returncode != 0 or "raw_syscalls:sys_enter" not in r.stderr \
                or "<not supported>" in r.stderr or "<not counted>" in r.stderr:
            lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
            return lines[-1] if lines else f"perf exited {r.returncode}"
        return None

    # ------------------------------------------------------------------- origin
    def start_origin(self):
        self.origin_port = self.free_port()
        self.cache_origin_port = self.free_port()
        # The workload rows' 1 MiB body, a file the origin serves as it is.
        big = os.path.join(self.tmp, "body-1m")
        with open(big, "wb") as f:
            f.write(bytes(range(256)) * (BIG_BODY_BYTES // 256))
        cfg = self.render("origin-nginx.conf", "origin.conf", ORIGIN_PORT=self.origin_port,
                          CACHE_ORIGIN_PORT=self.cache_origin_port, BODY=BODY, BIG_BODY=big)
        p = self.spawn(["nginx", "-p", self.tmp, "-e", f"{self.tmp}/origin-error.log",
                        "-c", cfg], "origin", self.load_cpu)
        url = f"http://127.0.0.1:{self.origin_port}/"
        self.wait_http(p, url, 15, "origin nginx")
        status, body = self.http_get(url)
        assert status == 200 and len(body) == 100, (status, len(body))
        status, body, headers = self.http_get_headers(f"http://127.0.0.1:{self.cache_origin_port}/")
        if status != 200 or body != BODY.encode() or \
                headers.get("cache-control") != "max-age=3600":
            raise RuntimeError(f"the origin's cacheable server answers {status}, {len(body)} "
                               f"bytes, Cache-Control {headers.get('cache-control')!r}")
        if self.origin_requests() is None:
            raise RuntimeError("the origin's /origin-status (stub_status) does not answer")
        status, body = self.http_get(f"http://127.0.0.1:{self.origin_port}{BIG_BODY_PATH}")
        if status != 200 or len(body) != BIG_BODY_BYTES:
            raise RuntimeError(f"the origin's {BIG_BODY_PATH} answers {status}, {len(body)} bytes")
        return p

    # ------------------------------------------------------------------- routes
    def make_routes(self):
        """The 1,000 prefix routes /svc0/ .. /svc999/, all to the one
        upstream, as each candidate's config spells them (the @VARS@ of
        ROUTES_CONFIGS); HAProxy's go into a map file in the run directory."""
        n = range(ROUTE_COUNT)
        hap_map = os.path.join(self.tmp, "routes.map")
        with open(hap_map, "w") as f:
            f.writelines(f"/svc{i}/ backend\n" for i in n)
        self.routes = dict(
            ROUTES="".join(f"      - name: svc{i}\n        match: {{ prefix: /svc{i}/ }}\n"
                           f"        cluster: backend\n" for i in n).rstrip("\n"),
            LOCATIONS="".join(f"        location /svc{i}/ {{\n            proxy_pass "
                              f"http://backend;\n        }}\n" for i in n).rstrip("\n"),
            ROUTES_MAP=hap_map)

    def check_route(self, name, port):
        """Portway only: a GET of ROUTE_PATH is counted by the route it is
        meant to match (the last of the 1,000), not by the catch-all."""
        route = ROUTE_PATH.split("/")[1]
        def count():
            status, body = self.http_get(f"http://{self.admin[name]}/stats")
            m = re.search(rf'^portway_route_requests_total\{{[^}}]*route="{route}"[^}}]*\}} (\S+)',
                          body.decode(errors="replace"), re.M) if status == 200 else None
            return float(m.group(1)) if m else None
        before = count()
        status, _ = self.http_get(f"http://127.0.0.1:{port}{ROUTE_PATH}")
        after = count()
        if status != 200 or before is None or after != before + 1:
            raise RuntimeError(f"{name}: GET {ROUTE_PATH} -> {status}, route {route} counted "
                               f"{before} -> {after}: not routed by that route")

    def http_get_headers(self, url, timeout=5.0):
        """GET url: (status, body, headers with lowercased names) or
        (None, b"", {})."""
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
        except urllib.error.HTTPError as e:
            return e.code, b"", {k.lower(): v for k, v in e.headers.items()}
        except (OSError, ValueError):
            return None, b"", {}

    def origin_requests(self):
        """The origin nginx's request count so far (stub_status; it counts
        the request that asks, and the requests of both its servers), or
        None."""
        status, body = self.http_get(f"http://127.0.0.1:{self.cache_origin_port}/origin-status")
        m = re.search(rb"^\s*\d+\s+\d+\s+(\d+)\s*$", body, re.M) if status == 200 else None
        return int(m.group(1)) if m else None

    def start_h2_origin(self):
        """The origin for the HTTP/2 upstream scenario: nghttpd, h2c only
        (it answers no HTTP/1.1, so a 200 through a proxy proves the proxy
        spoke HTTP/2 to it), serving the same 100-byte body as a file."""
        htdocs = os.path.join(self.tmp, "h2-htdocs")
        os.makedirs(htdocs, exist_ok=True)
        with open(os.path.join(htdocs, "index.html"), "w") as f:
            f.write(BODY)
        self.h2_origin_port = self.free_port()
        p = self.spawn(["nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", htdocs,
                        str(self.h2_origin_port)], "h2-origin", self.load_cpu)
        end = time.monotonic() + 15
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"nghttpd exited with status {p.returncode}: "
                                   f"{self.tail('h2-origin')}")
            try:
                with socket.create_connection(("127.0.0.1", self.h2_origin_port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError("nghttpd not listening after 15s")
                time.sleep(0.1)
        self.h2load(self.h2_origin_port, 10, 1, streams=1)
        return p

    # ---------------------------------------------------------------------- TLS
    def make_certs(self):
        """The run's certificate, shared by every TLS candidate: an ECDSA
        P-256 CA (self-signed) and an ECDSA P-256 leaf it signs, SAN
        localhost and 127.0.0.1. Files: the leaf (PEM) and its key (PKCS#8
        PEM), and both in one file for HAProxy's `crt`. The CA is only for
        the checks' clients (h2load does not verify)."""
        d = os.path.join(self.tmp, "tls")
        os.makedirs(d, exist_ok=True)
        f = {k: os.path.join(d, v) for k, v in (
            ("ca_key", "ca.key"), ("ca", "ca.pem"), ("key", "leaf.key"), ("csr", "leaf.csr"),
            ("ext", "leaf.ext"), ("cert", "leaf.pem"), ("pem", "leaf-with-key.pem"))}
        with open(f["ext"], "w") as out:
            out.write("subjectAltName = DNS:localhost, IP:127.0.0.1\n"
                      "basicConstraints = critical, CA:FALSE\n"
                      "keyUsage = critical, digitalSignature\n"
                      "extendedKeyUsage = serverAuth\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        for cmd in (
                ["openssl", "req", "-x509"] + ec + ["-keyout", f["ca_key"], "-out", f["ca"],
                 "-days", "2", "-sha256", "-subj", "/CN=Portway bench CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                ["openssl", "req", "-new"] + ec + ["-keyout", f["key"], "-out", f["csr"],
                 "-subj", "/CN=localhost"],
                ["openssl", "x509", "-req", "-in", f["csr"], "-CA", f["ca"], "-CAkey", f["ca_key"],
                 "-set_serial", "2", "-days", "2", "-sha256", "-extfile", f["ext"], "-out", f["cert"]],
                ["openssl", "verify", "-CAfile", f["ca"], f["cert"]]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[:3])} failed: {r.stderr.strip()}")
        with open(f["pem"], "w") as out:
            for part in ("cert", "key"):
                with open(f[part]) as src:
                    out.write(src.read())
        der = subprocess.run(["openssl", "x509", "-in", f["cert"], "-outform", "DER"],
                             capture_output=True, check=True, timeout=60).stdout
        f["sha256"] = hashlib.sha256(der).hexdigest()
        self.tls = f
        return f

    def tls_vars(self):
        return dict(TLS_CERT=self.tls["cert"], TLS_KEY=self.tls["key"], TLS_PEM=self.tls["pem"])

    def tls_client_context(self):
        ctx = ssl.create_default_context(cafile=self.tls["ca"])
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def https_get(self, port, ctx=None, session=None):
        """One request on a new TLS connection (verifying the certificate
        against the run's CA, SNI localhost); returns (status line, body,
        the SSLSocket's facts) or raises OSError."""
        ctx = ctx or self.tls_client_context()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                facts = {"version": s.version(), "cipher": s.cipher()[0],
                         "alpn": s.selected_alpn_protocol(), "session": s.session,
                         "reused": s.session_reused,
                         "cert_sha256": hashlib.sha256(s.getpeercert(True)).hexdigest()}
        head, _, body = data.partition(b"\r\n\r\n")
        return head.split(b"\r\n", 1)[0].decode(errors="replace"), body, facts

    def wait_https(self, p, port, deadline_s, what):
        end = time.monotonic() + deadline_s
        err = None
        while time.monotonic() < end:
            if p.poll() is not None:
                raise RuntimeError(f"{what} exited with status {p.returncode}: {self.tail(what)}")
            try:
                status, _, _ = self.https_get(port)
                if re.match(r"HTTP/1\.1 200\b", status):
                    return
                err = status
            except (OSError, ssl.SSLError) as e:
                err = e
            time.sleep(0.1)
        raise RuntimeError(f"{what} not answering 200 over TLS on port {port} after "
                           f"{deadline_s}s: {err}")

    def check_tls(self, name, port):
        """What the TLS rows rest on, checked on every TLS candidate: it
        serves the run's certificate (verified against the run's CA), TLS
        1.3, the origin's body; a second connection offering the first's
        session is NOT resumed (h2load offers the previous session on every
        reconnect, so a server that resumes would turn the handshake row
        into a resumption row). Also records how many NewSessionTicket
        messages it sends after a handshake (work it does per handshake even
        when they cannot be used; openssl s_client shows them)."""
        ctx = self.tls_client_context()
        status, body, first = self.https_get(port, ctx)
        _, _, second = self.https_get(port, ctx, session=first["session"])
        res = {k: first[k] for k in ("version", "alpn", "cert_sha256")}
        res["resumed_when_offered"] = second["reused"]
        problems = []
        if first["version"] != "TLSv1.3":
            problems.append(f"version {first['version']}")
        if first["cert_sha256"] != self.tls["sha256"]:
            problems.append("not the run's certificate")
        if not re.match(r"HTTP/1\.1 200\b", status):
            problems.append(f"status {status!r}")
        if body != BODY.encode():
            problems.append(f"body of {len(body)} bytes")
        if second["reused"]:
            problems.append("resumes sessions (the handshake row needs full handshakes)")
        r = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
             "-tls1_3", "-groups", TLS_GROUP, "-CAfile", self.tls["ca"], "-verify_return_error",
             "-alpn", "http/1.1", "-msg", "-ign_eof"],
            input=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            capture_output=True, timeout=30)
        out = r.stdout.decode(errors="replace")
        if "Verify return code: 0 (ok)" not in out:
            problems.append("openssl s_client did not verify the certificate")
        res["tickets_sent"] = len(re.findall(r"^<<< .*NewSessionTicket", out, re.M))
        m = re.search(r"^Server Temp Key: (\S+?),", out, re.M)
        res["group"] = m.group(1) if m else None
        if res["group"] != TLS_GROUP:
            problems.append(f"group {res['group']}")
        if problems:
            raise RuntimeError(f"{name}: TLS listener not as the rows need: {'; '.join(problems)}")
        return res

    # --------------------------------------------------------------- candidates
    def start(self, name, valgrind_out=None, scenario=None):
        """Starts candidate `name` on the proxy CPU; returns (Popen, port).
        `scenario` (H2DOWN, H2UP) picks that scenario's config; None is the
        HTTP/1.1 rows' config."""
        pre = []
        if valgrind_out:
            pre = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={valgrind_out}"]
        deadline = 120 if valgrind_out else 20
        base = slug(name) + (f"-{scenario}" if scenario else "")
        tag = f"{base}{'-callgrind' if valgrind_out else ''}"
        if scenario == TLS:
            template = TLS_CONFIGS[name]
        elif scenario == ROUTES:
            template = ROUTES_CONFIGS[name]
        elif scenario == CACHE:
            template = CACHE_CONFIGS[name]
        else:
            template = SCENARIO_CONFIGS[scenario][name] if scenario else None
        ports = dict(ORIGIN_PORT=self.origin_port, H2_ORIGIN_PORT=self.h2_origin_port)
        if scenario == TLS:
            ports.update(self.tls_vars())
        if scenario == ROUTES:
            ports.update(self.routes)
        if scenario == CACHE:
            # The cacheable server; nginx's cache starts empty every time
            # (no cache loader runs with master_process off, so an old
            # directory would only hold files it does not know about).
            ports["ORIGIN_PORT"] = self.cache_origin_port
            if name in NGINXES:
                cache_dir = os.path.join(self.tmp, "tmp", f"{tag}-store")
                shutil.rmtree(cache_dir, ignore_errors=True)
                os.makedirs(cache_dir)
                ports["CACHE_DIR"] = cache_dir
        if name in PORTWAYS:
            cfg = self.render(template or PORTWAYS[name], f"{base}.yaml", **ports)
            addr_file = os.path.join(self.tmp, f"{base}-admin-address")
            if os.path.exists(addr_file):
                os.unlink(addr_file)
            p = self.spawn(pre + [self.args.portway_bin, "-c", cfg, "--workers", "1",
                                  "--admin-address-path", addr_file], tag, self.proxy_cpu)
            end = time.monotonic() + deadline
            admin = None
            while time.monotonic() < end:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}: {self.tail(tag)}")
                if os.path.exists(addr_file):
                    admin = open(addr_file).read().strip()
                    if admin and self.http_get(f"http://{admin}/ready")[0] == 200:
                        break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"{name} admin not ready after {deadline}s (admin={admin})")
            status, body = self.http_get(f"http://{admin}/listeners")
            if status != 200:
                raise RuntimeError(f"GET /listeners -> {status}")
            listeners = json.loads(body)["listeners"]
            port = int(next(l for l in listeners if l["name"] == "edge")["address"].rsplit(":", 1)[1])
            self.admin[name] = admin
            try:
                self.check_filters(name, admin)
            except Exception:
                self.stop(p)  # do not leave it running on the proxy CPU
                raise
        elif name in NGINXES:
            port = self.free_port()
            cfg = self.render(template or "nginx.conf", f"{base}.conf", PORT=port, **ports)
            p = self.spawn(pre + ["nginx", "-p", self.tmp, "-e", f"{self.tmp}/{base}-error.log",
                                  "-c", cfg], tag, self.proxy_cpu)
        elif name == "haproxy":
            port = self.free_port()
            cfg = self.render(template or "haproxy.cfg", f"{base}.cfg", PORT=port, **ports)
            p = self.spawn(pre + ["haproxy", "-db", "-f", cfg], tag, self.proxy_cpu)
        else:
            raise ValueError(name)
        if scenario == TLS:
            self.wait_https(p, port, deadline, tag)
        elif scenario == H2DOWN and name != "portway":
            # An HTTP/2-only listener: urllib cannot ask it; h2load can.
            self.wait_h2(p, port, deadline, tag)
        else:
            self.wait_http(p, f"http://127.0.0.1:{port}/", deadline, tag)
        if scenario == H2UP:
            status, body = self.http_get(f"http://127.0.0.1:{port}/")
            if status != 200 or body != BODY.encode():
                self.stop(p)
                raise RuntimeError(f"{name}: the h2c origin's body did not come back "
                                   f"through the proxy (status {status}, {len(body)} bytes)")
        if scenario == ROUTES and name in PORTWAYS:
            try:
                self.check_route(name, port)
            except Exception:
                self.stop(p)
                raise
        return p, port

    def wait_h2(self, p, port, deadline_s, what):
        end = time.monotonic() + deadline_s
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"{what} exited with status {p.returncode}: {self.tail(what)}")
            try:
                self.h2load(port, 1, 1, streams=1)
                return
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                if time.monotonic() > end:
                    raise RuntimeError(f"{what} not answering HTTP/2 on port {port} after "
                                       f"{deadline_s}s: {e}")
                time.sleep(0.2)

    def check_filters(self, name, admin):
        """The chain column must really run the chain, and the bare one none:
        compares the loaded listener's filters (GET /config_dump) with what
        the candidate is meant to have."""
        status, body = self.http_get(f"http://{admin}/config_dump")
        if status != 200:
            raise RuntimeError(f"{name}: GET /config_dump -> {status}")
        edge = next(l for l in json.loads(body)["listeners"] if l["name"] == "edge")
        got = [f["name"] for f in edge.get("filters", [])]
        want = PORTWAY_FILTERS[name]
        if got != want:
            raise RuntimeError(f"{name}: listener filters are {got}, expected {want} "
                               f"(configs/{PORTWAYS[name]})")

    def chain_counters(self, name):
        """Counters that show whether the chain acted (it should not: the
        origin never fails); None if unavailable."""
        status, body = self.http_get(f"http://{self.admin.get(name)}/stats")
        if status != 200:
            return None
        res = {}
        for key, pat in (("retry_attempts", r'^portway_retry_attempts_total\{[^}]*\} (\S+)'),
                         ("filter_local_replies",
                          r'^portway_local_replies_total\{[^}]*cause="filter_local_reply"[^}]*\} (\S+)'),
                         ("breaker_rejected", r'^portway_circuit_breaker_rejected_total\{[^}]*\} (\S+)'),
                         ("limit_overflow", r'^portway_upstream_limit_overflow_total\{[^}]*\} (\S+)')):
            vals = [float(v) for v in re.findall(pat, body.decode(errors="replace"), re.M)]
            res[key] = sum(vals) if vals else None
        return res

    # ------------------------------------------------------------------ metrics
    def load_shape(self, scenario):
        """(connections, streams per connection or None for HTTP/1.1) of the
        fixed-count runs that count instructions in `scenario`."""
        c = self.counts
        return (c["h2_c"], c["h2_m"]) if scenario == H2DOWN else (c["cg_c"], None)

    def measure_instructions(self, name, rnd, scenario=None):
        c = self.counts
        prefix = f"{scenario}_" if scenario else ""
        base = slug(name) + (f"-{scenario}" if scenario else "")
        out = os.path.join(self.tmp, f"callgrind.{base}.{rnd}")
        conns, streams = self.load_shape(scenario)
        lenient = scenario == H2UP
        p, port = self.start(name, valgrind_out=out, scenario=scenario)
        try:
            self.h2load(port, c["warmup"], conns, streams, reasonless_ok=lenient)
            subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True,
                           capture_output=True, timeout=60)
            run = self.h2load(port, c["cg_n"], conns, streams, reasonless_ok=lenient)
            total = self.dump_callgrind(p.pid, out + ".1")
            res = {f"{prefix}instr_per_req": total / c["cg_n"], f"{prefix}callgrind_ir": total,
                   f"{prefix}callgrind_requests": c["cg_n"],
                   f"{prefix}callgrind_req_per_s": run["req_per_s"]}
            if scenario is None:
                # The same count over one connection: every request is then
                # its own turns of the event loop, nothing is batched.
                subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True,
                               capture_output=True, timeout=60)
                self.h2load(port, c["cg_n"], 1)
                total_c1 = self.dump_callgrind(p.pid, out + ".2")
                res.update(instr_per_req_c1=total_c1 / c["cg_n"], callgrind_ir_c1=total_c1)
            return res
        finally:
            self.stop(p, timeout=30)
            self.remove_callgrind_files(base, rnd)

    def perf_syscalls(self, pid, port, n, conns):
        out = os.path.join(self.tmp, "perf.csv")
        perf = subprocess.Popen(["perf", "stat", "-x,", "-o", out, "-e",
                                 "raw_syscalls:sys_enter,context-switches", "-p", str(pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        self.procs.append(perf)
        try:
            time.sleep(0.5)  # let perf attach
            self.h2load(port, n, conns)
            time.sleep(0.1)
        finally:
            perf.send_signal(signal.SIGINT)
            perf.wait(30)
            self.procs.remove(perf)
        vals = {}
        with open(out) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                    vals[parts[2]] = float(parts[0])
        if "raw_syscalls:sys_enter" not in vals:
            raise RuntimeError(f"perf output not understood: {open(out).read()}")
        return vals["raw_syscalls:sys_enter"] / n, vals.get("context-switches", float("nan")) / n

    def measure_native(self, name):
        c = self.counts
        res = {}
        p, port = self.start(name)
        try:
            self.h2load(port, c["warmup"], c["cpu_c"])
            if self.perf_reason is None:
                res["syscalls_per_req_c1"], res["ctxsw_per_req_c1"] = \
                    self.perf_syscalls(p.pid, port, c["sys_n1"], 1)
                res["syscalls_per_req_c50"], res["ctxsw_per_req_c50"] = \
                    self.perf_syscalls(p.pid, port, c["sys_n50"], 50)
            run, cpu_us, busy = self.cpu_load(p.pid, port)
            res["cpu_us_per_req"] = cpu_us
            res["cpu_run_requests"] = run["requests"]
            res["req_per_s"] = run["req_per_s"]
            res["core_busy_pct"] = busy
            if p.poll() is not None:
                raise RuntimeError(f"{name} died during the run")
            if name == CHAIN:
                counters = self.chain_counters(name)
                res["chain_counters"] = counters
                if counters and any(counters.values()):
                    log(f"bench: warning: {name}: the chain acted during the run ({counters}); "
                        f"the column is then not the cost of an idle chain")
        finally:
            self.stop(p)
        return res

    def measure_h2_cpu(self, name, scenario):
        """CPU us/request (and req/s) of `scenario`, measured like the HTTP/1.1
        rows' CPU run: a native proxy, a warm-up, then utime+stime around a
        fixed-count run. Downstream: h2load h2c c10 m10; upstream: the HTTP/1.1
        load of the CPU row (50 connections, or wrk with --loadgen wrk)."""
        c = self.counts
        p, port = self.start(name, scenario=scenario)
        try:
            if scenario == H2DOWN:
                conns, streams = c["h2_c"], c["h2_m"]
            else:
                conns, streams = c["cpu_c"], None
            lenient = scenario == H2UP
            self.h2load(port, c["warmup"], conns, streams, reasonless_ok=lenient)
            t0 = self.proc_ticks(p.pid)
            if scenario == H2UP and self.args.loadgen == "wrk":
                run = self.wrk(port, c["wrk_secs"], conns)
            else:
                run = self.h2load(port, c["cpu_n"], conns, streams, reasonless_ok=lenient)
            t1 = self.proc_ticks(p.pid)
            if p.poll() is not None:
                raise RuntimeError(f"{name} died during the {scenario} run")
            res = {f"{scenario}_cpu_us_per_req": (t1 - t0) * 1e6 / CLK_TCK / run["requests"],
                   f"{scenario}_cpu_run_requests": run["requests"],
                   f"{scenario}_req_per_s": run["req_per_s"]}
            if "status_unparsed" in run:
                res[f"{scenario}_empty_reason_phrase"] = True
            return res
        finally:
            self.stop(p)

    def tls_loads(self, n_hs, n_req):
        """The three TLS loads, in the order measured: (metric prefix, unit,
        warm-up count, measured count, h2load keywords). All at tls_c
        connections: a new connection (full handshake) per request over
        HTTP/1.1; HTTP/1.1 keep-alive; HTTP/2 (ALPN h2) with h2_m streams."""
        c = self.counts
        return [("tls_hs", "hs", c["tls_hs_warmup"], n_hs, dict(new_conn=True)),
                ("tls_ka", "req", c["warmup"], n_req, {}),
                ("tls_h2", "req", c["warmup"], n_req, dict(streams=c["h2_m"]))]

    @staticmethod
    def tcp_opens():
        """(ActiveOpens, PassiveOpens) of the whole machine from /proc/net/snmp."""
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Tcp:")]
        hdr, val = rows[0], rows[1]
        return int(val[hdr.index("ActiveOpens")]), int(val[hdr.index("PassiveOpens")])

    def measure_tls_instructions(self, name, rnd):
        """Instructions per handshake / per request of the three TLS loads,
        in one proxy under callgrind."""
        c = self.counts
        return self.callgrind_loads(name, rnd, TLS, TLS, [
            (key, unit, warm, n, dict(kw, c=c["tls_c"], tls=True))
            for key, unit, warm, n, kw in self.tls_loads(c["tls_cg_hs"], c["cg_n"])])

    def callgrind_loads(self, name, rnd, scenario, label, loads):
        """Several loads through one proxy (`scenario`'s config) under
        callgrind: for each a warm-up, callgrind_control -z, the fixed
        count, a dump (the k-th dump is file .k). `loads`: (metric prefix,
        unit, warm-up count, count, h2load keywords); gives the prefix's
        instr_per_<unit>, callgrind_ir, callgrind_count, callgrind_per_s.
        `label` names the files."""
        base = f"{slug(name)}-{label}"
        out = os.path.join(self.tmp, f"callgrind.{base}.{rnd}")
        p, port = self.start(name, valgrind_out=out, scenario=scenario)
        res = {}
        try:
            for k, (key, unit, warm, n, kw) in enumerate(loads, 1):
                self.h2load(port, warm, **kw)
                subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True,
                               capture_output=True, timeout=60)
                run = self.h2load(port, n, **kw)
                total = self.dump_callgrind(p.pid, f"{out}.{k}")
                res.update({f"{key}_instr_per_{unit}": total / n, f"{key}_callgrind_ir": total,
                            f"{key}_callgrind_count": n,
                            f"{key}_callgrind_per_s": run["req_per_s"]})
            return res
        finally:
            self.stop(p, timeout=30)
            self.remove_callgrind_files(base, rnd)

    def dump_callgrind(self, pid, dump):
        """Has the callgrind'ed process `pid` write its counts since the last
        zeroing to `dump`, and returns their total (Ir)."""
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True,
                       capture_output=True, timeout=60)
        return self.read_callgrind_total(dump)

    def remove_callgrind_files(self, base, rnd):
        for f in os.listdir(self.tmp):
            if f.startswith(f"callgrind.{base}.{rnd}"):
                os.unlink(os.path.join(self.tmp, f))

    @staticmethod
    def read_callgrind_total(dump):
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if os.path.exists(dump):
                with open(dump) as f:
                    m = re.search(r"^summary:\s*(\d+)", f.read(), re.M)
                if m:
                    return int(m.group(1))
            time.sleep(0.2)
        raise RuntimeError(f"no callgrind dump at {dump}")

    def measure_tls_cpu(self, name):
        """The TLS listener's checks (check_tls), then proxy CPU µs per
        handshake / per request of the three TLS loads in one native proxy:
        for each a warm-up, then utime+stime around the fixed count. The
        handshake run also counts the machine's TCP passive opens around it:
        at least one per request, or h2load did not reconnect; what is over
        that (less anything else on the machine) is new upstream
        connections, which should be none (the upstream leg keeps alive)."""
        c = self.counts
        p, port = self.start(name, scenario=TLS)
        try:
            res = {"tls_checks": self.check_tls(name, port)}
            for key, unit, warm, n, kw in self.tls_loads(c["tls_hs"], c["cpu_n"]):
                self.h2load(port, warm, c["tls_c"], tls=True, **kw)
                opens0, t0, s0 = self.tcp_opens(), self.proc_ticks(p.pid), self.cpu_times()
                run = self.h2load(port, n, c["tls_c"], tls=True, **kw)
                opens1, t1, s1 = self.tcp_opens(), self.proc_ticks(p.pid), self.cpu_times()
                if p.poll() is not None:
                    raise RuntimeError(f"{name} died during the TLS {key} run")
                rate = "per_s" if unit == "hs" else "req_per_s"
                res.update({f"{key}_cpu_us_per_{unit}": (t1 - t0) * 1e6 / CLK_TCK / n,
                            f"{key}_cpu_run_count": n, f"{key}_{rate}": run["req_per_s"]})
                busy = {}
                for cpu in s1:
                    dt, di = s1[cpu][0] - s0[cpu][0], s1[cpu][1] - s0[cpu][1]
                    busy[cpu] = round(100.0 * (dt - di) / dt, 1) if dt else None
                res[f"{key}_core_busy_pct"] = busy
                if key == "tls_hs":
                    passive = opens1[1] - opens0[1]
                    if passive < n:
                        raise RuntimeError(f"{name}: {passive} TCP connections accepted for {n} "
                                           f"requests: h2load did not make one per request")
                    res["tls_hs_extra_tcp_opens"] = passive - n
                    if passive - n > n // 100:
                        log(f"bench: warning: {name}: {passive - n} more TCP connections than "
                            f"handshakes during the handshake run (new upstream connections, "
                            f"or other work on the machine)")
            return res
        finally:
            self.stop(p)

    # -------------------------------------------------------------- cache rows
    def check_cache(self, name, port):
        """One request after the warming one (start()'s readiness GET): the
        origin's body, and from a cache a HIT (`x-portway-cache: HIT`,
        nginx's `X-Cache: HIT`); the proxied candidate must carry no cache
        header. Returns what was seen."""
        status, body, headers = self.http_get_headers(f"http://127.0.0.1:{port}/")
        res = {"status": status, "body_bytes": len(body),
               "cache_control": headers.get("cache-control")}
        problems = []
        if status != 200 or body != BODY.encode():
            problems.append(f"status {status}, {len(body)}-byte body")
        if name in CACHES:
            res[CACHES[name]] = headers.get(CACHES[name])
            if headers.get(CACHES[name]) != "HIT":
                problems.append(f"{CACHES[name]}: {headers.get(CACHES[name])!r}, not HIT")
        elif "x-portway-cache" in headers:
            problems.append(f"x-portway-cache: {headers['x-portway-cache']!r} without a cache")
        if problems:
            raise RuntimeError(f"{name}: cache rows check failed after warming: "
                               f"{'; '.join(problems)}")
        return res

    def portway_cache_hits(self, name):
        """portway.cache's hit count in the `bench` zone (GET /cache), or None."""
        if name != CACHE_PORTWAY:
            return None
        status, body = self.http_get(f"http://{self.admin.get(name)}/cache")
        if status != 200:
            return None
        zone = next((z for z in json.loads(body).get("zones", []) if z.get("name") == "bench"),
                    None)
        return zone.get("hits") if zone else None

    def cache_counts(self, name):
        return self.origin_requests(), self.portway_cache_hits(name)

    def cache_run_facts(self, name, before, after, n, what):
        """What the origin (and portway.cache's own counter) saw during a
        measured run of n requests. The origin's count includes the two
        stub_status requests' own; a cache must leave it at ~0 or the row
        is not a HIT row (an error); the proxied candidate should pass all n."""
        res = {}
        if before[0] is not None and after[0] is not None:
            origin = after[0] - before[0] - 1
            res[f"cache_origin_requests_{what}"] = origin
            if name in CACHES and origin > n // 100:
                raise RuntimeError(f"{name}: the origin served {origin} of {n} requests during "
                                   f"the {what} run: not a cache HIT measurement")
            if name in CACHES and origin:
                log(f"bench: warning: {name}: the origin served {origin} of {n} requests "
                    f"during the {what} run")
            if name not in CACHES and origin != n:
                log(f"bench: warning: {name}: the origin counted {origin} requests for {n} "
                    f"proxied during the {what} run")
        if before[1] is not None and after[1] is not None:
            res[f"cache_hits_{what}"] = after[1] - before[1]
            if after[1] - before[1] != n:
                log(f"bench: warning: {name}: portway.cache counted {after[1] - before[1]} hits "
                    f"for {n} requests during the {what} run")
        return res

    def measure_cache_instructions(self, name, rnd):
        """Instructions per request of the cache rows, like the HTTP/1.1
        row: the proxy under callgrind, against the cacheable origin; the
        readiness GET warms the cache, a check sees a HIT, then warm-up, zero,
        the fixed count at c10, dump; the origin's count around the run."""
        c = self.counts
        base = f"{slug(name)}-{CACHE}"
        out = os.path.join(self.tmp, f"callgrind.{base}.{rnd}")
        p, port = self.start(name, valgrind_out=out, scenario=CACHE)
        try:
            check = self.check_cache(name, port)
            self.h2load(port, c["warmup"], c["cg_c"])
            subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True,
                           capture_output=True, timeout=60)
            before = self.cache_counts(name)
            run = self.h2load(port, c["cg_n"], c["cg_c"])
            after = self.cache_counts(name)
            total = self.dump_callgrind(p.pid, f"{out}.1")
            res = {"cache_instr_per_req": total / c["cg_n"], "cache_callgrind_ir": total,
                   "cache_callgrind_requests": c["cg_n"],
                   "cache_callgrind_req_per_s": run["req_per_s"], "cache_check_cg": check}
            res.update(self.cache_run_facts(name, before, after, c["cg_n"], "cg"))
            return res
        finally:
            self.stop(p, timeout=30)
            self.remove_callgrind_files(base, rnd)

    def measure_cache_native(self, name):
        """CPU us per request and req/s of the cache rows, like the HTTP/1.1
        CPU row: a native proxy against the cacheable origin, warmed and
        checked as above, a warm-up at c50, then utime+stime around the
        fixed count at c50 (or wrk with --loadgen wrk), with the origin's
        count around it, and a last check that it still answers HITs."""
        c = self.counts
        p, port = self.start(name, scenario=CACHE)
        try:
            check = self.check_cache(name, port)
            self.h2load(port, c["warmup"], c["cpu_c"])
            before = self.cache_counts(name)
            run, cpu_us, busy = self.cpu_load(p.pid, port)
            after = self.cache_counts(name)
            if p.poll() is not None:
                raise RuntimeError(f"{name} died during the cache run")
            res = {"cache_cpu_us_per_req": cpu_us,
                   "cache_cpu_run_requests": run["requests"],
                   "cache_req_per_s": run["req_per_s"], "cache_core_busy_pct": busy,
                   "cache_check_cpu": check, "cache_check_after": self.check_cache(name, port)}
            res.update(self.cache_run_facts(name, before, after, run["requests"], "cpu"))
            return res
        finally:
            self.stop(p)

    def cpu_load(self, pid, port, n=None, conns=None, path="/", **h2load_kw):
        """The CPU run: the fixed-count load (or wrk's fixed time) at cpu_c
        connections (or n requests of `path` at `conns`). Returns (the
        load's result, the proxy's utime+stime in µs per request, each
        core's busy % meanwhile)."""
        c = self.counts
        conns = conns or c["cpu_c"]
        t0, s0 = self.proc_ticks(pid), self.cpu_times()
        if self.args.loadgen == "wrk":
            run = self.wrk(port, c["wrk_secs"], conns, path)
        else:
            run = self.h2load(port, n or c["cpu_n"], conns, path=path, **h2load_kw)
        t1, s1 = self.proc_ticks(pid), self.cpu_times()
        busy = {}
        for cpu in s1:
            dt, di = s1[cpu][0] - s0[cpu][0], s1[cpu][1] - s0[cpu][1]
            busy[cpu] = round(100.0 * (dt - di) / dt, 1) if dt else None
        return run, (t1 - t0) * 1e6 / CLK_TCK / run["requests"], busy

    def measure_idle_rss(self, name, n=None, prefix=""):
        """RSS per idle keep-alive connection: a fresh proxy, n (default
        the idle count) connections by idle_conns.py. `prefix` names the
        metrics."""
        n = n or self.counts["idle"]
        p, port = self.start(name)
        try:
            r = subprocess.run(["taskset", "-c", self.load_cpu, sys.executable,
                                os.path.join(HERE, "idle_conns.py"), "--port", str(port),
                                "--pid", str(p.pid), "-n", str(n)],
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"idle_conns.py failed: {r.stderr}")
            d = json.loads(r.stdout)
            if d["non_200"] or d["closed_by_peer"]:
                raise RuntimeError(f"idle connections not all served/kept open: {d}")
            return {f"{prefix}rss_bytes_per_idle_conn": d["bytes_per_connection"],
                    f"{prefix}idle_detail": d}
        finally:
            self.stop(p)

    # ----------------------------------------------------------- workload rows
    def measure_work_instructions(self, name, rnd):
        """Instructions per request through the HTTP/1.1 rows' config (1
        route), in one proxy under callgrind, at c10: GET ROUTE_PATH (the
        1-route side of the routes ratio), GET / with the 20 headers, and
        the 1 MiB body (fewer requests, each body's size checked)."""
        c = self.counts
        headers = [f"{k}: {v}" for k, v in WORK_HEADERS]
        return self.callgrind_loads(name, rnd, None, WORK, [
            ("work_route1", "req", c["warmup"], c["cg_n"], dict(c=c["cg_c"], path=ROUTE_PATH)),
            ("work_hdr20", "req", c["warmup"], c["cg_n"], dict(c=c["cg_c"], headers=headers)),
            ("work_big", "req", c["big_warmup"], c["big_cg_n"],
             dict(c=c["big_c"], path=BIG_BODY_PATH, body_bytes=BIG_BODY_BYTES))])

    def measure_routes_instructions(self, name, rnd):
        """Instructions per request of GET ROUTE_PATH through the 1,000-route
        config (ROUTES_CONFIGS), under callgrind at c10, right after the
        1-route count of measure_work_instructions."""
        c = self.counts
        return self.callgrind_loads(name, rnd, ROUTES, ROUTES, [
            ("work_routes", "req", c["warmup"], c["cg_n"], dict(c=c["cg_c"], path=ROUTE_PATH))])

    def measure_big_cpu(self, name):
        """CPU µs per 1 MiB response, like the HTTP/1.1 CPU row: a native
        proxy, a warm-up, then utime+stime around a fixed count (c10; wrk's
        fixed time with --loadgen wrk)."""
        c = self.counts
        load = dict(conns=c["big_c"], path=BIG_BODY_PATH, body_bytes=BIG_BODY_BYTES)
        p, port = self.start(name)
        try:
            self.h2load(port, c["big_warmup"], c["big_c"], path=BIG_BODY_PATH,
                        body_bytes=BIG_BODY_BYTES)
            spills = self.nginx_temp_file_spills(name)
            run, cpu_us, busy = self.cpu_load(p.pid, port, c["big_cpu_n"], **load)
            if p.poll() is not None:
                raise RuntimeError(f"{name} died during the 1 MiB run")
            res = {"work_big_cpu_us_per_req": cpu_us, "work_big_cpu_run_requests": run["requests"],
                   "work_big_req_per_s": run["req_per_s"], "work_big_core_busy_pct": busy}
            if spills is not None:
                res["work_big_nginx_temp_file_responses"] = \
                    self.nginx_temp_file_spills(name) - spills
            return res
        finally:
            self.stop(p)

    def nginx_temp_file_spills(self, name):
        """nginx only: how many responses so far it buffered to a temporary
        file (its default proxy_buffering does so once its memory buffers
        are full and the client is slower than the origin; each is logged
        as a warning); None for the other candidates."""
        if name not in NGINXES:
            return None
        try:
            with open(os.path.join(self.tmp, f"{slug(name)}-error.log"), errors="replace") as f:
                return sum("buffered to a temporary file" in line for line in f)
        except OSError:
            return 0

    # --------------------------------------------------------------------- main
    def run(self):
        cands = self.args.only
        rounds = self.args.rounds
        results = {c: [] for c in cands}
        versions = self.versions(cands)
        started = datetime.datetime.now().astimezone()
        log(f"bench: {rounds} round(s) of {' -> '.join(cands)}; proxy on CPU {self.proxy_cpu}, "
            f"origin + load on CPU {self.load_cpu}; temp dir {self.tmp}")
        if self.perf_reason:
            log(f"bench: perf unsupported ({self.perf_reason}): syscall counts will be n/a")
        origin = self.start_origin()
        h2_origin = self.start_h2_origin() if self.args.h2 else None
        if self.args.tls:
            self.make_certs()
        if self.args.work:
            self.make_routes()
        errors = []
        try:
            for rnd in range(1, rounds + 1):
                for name in cands:
                    row = {"round": rnd}
                    t = time.monotonic()
                    steps = []
                    if self.args.h1 and "h1" in CANDIDATE_ROWS[name]:
                        steps += [lambda: self.measure_instructions(name, rnd),
                                  lambda: self.measure_native(name),
                                  lambda: self.measure_idle_rss(name)]
                    if self.args.h2:
                        for sc in (H2DOWN, H2UP):
                            if name in SCENARIO_CONFIGS[sc]:
                                steps += [lambda sc=sc: self.measure_instructions(name, rnd, sc),
                                          lambda sc=sc: self.measure_h2_cpu(name, sc)]
                    if self.args.tls and name in TLS_CONFIGS:
                        steps += [lambda: self.measure_tls_instructions(name, rnd),
                                  lambda: self.measure_tls_cpu(name)]
                    if self.args.cache and name in CACHE_CONFIGS:
                        steps += [lambda: self.measure_cache_instructions(name, rnd),
                                  lambda: self.measure_cache_native(name)]
                    if self.args.work and name in ROUTES_CONFIGS:
                        steps += [lambda: self.measure_work_instructions(name, rnd),
                                  lambda: self.measure_routes_instructions(name, rnd),
                                  lambda: self.measure_big_cpu(name),
                                  lambda: self.measure_idle_rss(name, self.counts["idle_many"],
                                                                "work_idle10k_")]
                    for step in steps:
                        try:
                            row.update(step())
                        except Exception as e:  # keep the other metrics
                            msg = f"round {rnd} {name}: {e}"
                            log(f"bench: ERROR {msg}")
                            errors.append(msg)
                    if row.get("work_route1_instr_per_req") and "work_routes_instr_per_req" in row:
                        row["work_routes_vs_1"] = (row["work_routes_instr_per_req"] /
                                                   row["work_route1_instr_per_req"])
                    results[name].append(row)
                    log(f"bench: round {rnd} {name} ({time.monotonic() - t:.0f}s): " +
                        ", ".join(f"{k}={row[k]:.4g}" for k, _, _ in ALL_METRICS if k in row))
        finally:
            self.stop(origin)
            if h2_origin:
                self.stop(h2_origin)
            self.stop_all()

        summary = {c: {} for c in cands}
        for c in cands:
            for key, _, _ in ALL_METRICS:
                vals = [r[key] for r in results[c] if key in r]
                if vals:
                    summary[c][key] = statistics.median(vals)
        doc = {
            "date": started.isoformat(timespec="seconds"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "cpu_model": self.cpu_model(),
            "kernel": platform.release(),
            "proxy_cpu": self.proxy_cpu, "load_cpu": self.load_cpu,
            "rounds": rounds, "quick": self.args.quick, "counts": self.counts,
            "rows": self.args.rows,
            "loadgen": self.args.loadgen,
            "perf": "ok" if self.perf_reason is None else f"unsupported: {self.perf_reason}",
            "versions": versions, "order": cands,
            "errors": errors, "medians": summary, "raw": results,
            "chain": self.chain_summary(results, summary),
            "http2": self.h2_summary(cands, summary),
            "tls": self.tls_summary(cands, results, summary),
            "cache": self.cache_summary(cands, results, summary),
            "workloads": self.work_summary(cands, results, summary),
        }
        os.makedirs(self.args.results_dir, exist_ok=True)
        path = os.path.join(self.args.results_dir,
                            started.strftime("%Y%m%dT%H%M%S") + ".json")
        with open(path, "w") as f:
            json.dump(doc, f, indent=2)
        print(self.table(doc))
        print(f"\nraw numbers: {os.path.relpath(path, ROOT)}")
        return 1 if errors else 0

    def h2_summary(self, cands, summary):
        """What the HTTP/2 rows measured, and Portway's ratios to each peer
        there (the per-candidate medians are in `medians` with the h2down_ /
        h2up_ prefixes)."""
        if not self.args.h2:
            return {"measured": False, "reason": "BENCH_H2=0 or not in --rows"}
        c = self.counts
        doc = {"measured": True}
        for sc, desc in ((H2DOWN, {
                "what": "HTTP/2 clients (h2c prior knowledge) -> proxy -> HTTP/1.1 origin "
                        "(the HTTP/1.1 rows' origin)",
                "load": f"h2load -c {c['h2_c']} -m {c['h2_m']} (instructions: {c['cg_n']} "
                        f"requests; CPU: {c['cpu_n']} requests)",
                "not_measured": {}}), (H2UP, {
                "what": "HTTP/1.1 clients -> proxy -> HTTP/2 origin (h2c prior knowledge)",
                "origin": H2_ORIGIN,
                "load": f"h2load --h1 (instructions: {c['cg_n']} requests at c{c['cg_c']}; "
                        f"CPU: {c['cpu_n']} requests at c{c['cpu_c']})",
                "not_measured": {"nginx": NGINX_NO_H2_UPSTREAM}})):
            desc["configs"] = {n: f"bench/configs/{f}" for n, f in SCENARIO_CONFIGS[sc].items()}
            desc["candidates"] = [n for n in cands if n in SCENARIO_CONFIGS[sc]]
            ratios = {}
            for peer in ("nginx", "haproxy"):
                a, b = summary.get("portway", {}), summary.get(peer, {})
                for key in (f"{sc}_instr_per_req", f"{sc}_cpu_us_per_req"):
                    if key in a and b.get(key):
                        ratios[f"portway/{peer} {key}"] = a[key] / b[key]
            desc["ratio_of_medians"] = ratios
            doc[sc] = desc
        return doc

    def tls_summary(self, cands, results, summary):
        """What the TLS rows measured, how (the certificate, the pinned
        parameters, the loads), each candidate's listener checks, and
        Portway's ratios of medians to each peer."""
        if not self.args.tls:
            return {"measured": False, "reason": self.args.tls_skipped}
        c = self.counts
        doc = {"measured": True,
               "certificate": TLS_CERT_DESC,
               "leaf_sha256": self.tls["sha256"] if self.tls else None,
               "parameters": f"TLS 1.3 only, group {TLS_GROUP}, cipher suite {TLS_CIPHERSUITE} "
                             f"(pinned by the client), no resumption",
               "loads": {
                   "tls_hs": f"h2load --h1 -c {c['tls_c']} with `Connection: close`: a new "
                             f"connection and full handshake per request ({c['tls_cg_hs']} under "
                             f"callgrind, {c['tls_hs']} for CPU, after {c['tls_hs_warmup']})",
                   "tls_ka": f"h2load --h1 -c {c['tls_c']} over TLS, keep-alive ({c['cg_n']} "
                             f"requests under callgrind, {c['cpu_n']} for CPU)",
                   "tls_h2": f"h2load -c {c['tls_c']} -m {c['h2_m']}, ALPN h2 ({c['cg_n']} "
                             f"requests under callgrind, {c['cpu_n']} for CPU)"},
               "configs": {n: f"bench/configs/{f}" for n, f in TLS_CONFIGS.items()},
               "candidates": [n for n in cands if n in TLS_CONFIGS],
               "checks": {n: next((r["tls_checks"] for r in results[n] if "tls_checks" in r), None)
                          for n in cands if n in TLS_CONFIGS}}
        ratios = {}
        for peer in ("nginx", "haproxy"):
            a, b = summary.get("portway", {}), summary.get(peer, {})
            for key, _, _ in TLS_METRICS:
                if "instr" in key or "cpu" in key:
                    if key in a and b.get(key):
                        ratios[f"portway/{peer} {key}"] = a[key] / b[key]
        doc["ratio_of_medians"] = ratios
        return doc

    def cache_summary(self, cands, results, summary):
        """What the cache rows measured, how, the HIT checks, what the origin
        saw during the measured runs, and the ratios the cache issue asks
        for (portway+cache / portway proxied, portway+cache / nginx+cache) as
        ratios of medians and per round."""
        if not self.args.cache:
            return {"measured": False, "reason": self.args.cache_skipped}
        c = self.counts
        doc = {"measured": True,
               "what": "HTTP/1.1 keep-alive clients -> proxy -> the origin's cacheable server; "
                       "portway proxies every request, portway+cache and nginx+cache answer "
                       "every measured request from their store (HIT)",
               "origin": CACHE_ORIGIN,
               "load": f"h2load --h1 (instructions: {c['cg_n']} requests at c{c['cg_c']} "
                       f"under callgrind; CPU and req/s: "
                       f"{c['cpu_n'] if self.args.loadgen == 'h2load' else str(c['wrk_secs']) + ' s of wrk'}"
                       f" at c{c['cpu_c']}), after a warm-up of {c['warmup']}",
               "warming": "start()'s readiness GET (a MISS, stored), then a checked GET that "
                          "must be a HIT, then the warm-up load",
               "configs": {n: f"bench/configs/{f}" for n, f in CACHE_CONFIGS.items()},
               "hit_header": CACHES,
               "candidates": [n for n in cands if n in CACHE_CONFIGS],
               "targets": CACHE_TARGETS}
        # What the origin (stub_status) and portway.cache counted during the
        # measured runs, every round: a HIT row should show 0 origin requests.
        seen = {}
        for n in doc["candidates"]:
            seen[n] = {k: [r[k] for r in results[n] if k in r] for k in (
                "cache_origin_requests_cg", "cache_origin_requests_cpu", "cache_hits_cg",
                "cache_hits_cpu")}
            seen[n] = {k: v for k, v in seen[n].items() if v}
            # Over every measured run: origin requests per measured request
            # (1 when proxying, 0 for a HIT row).
            origin = requests = 0
            for r in results[n]:
                for what, count in (("cg", "cache_callgrind_requests"),
                                    ("cpu", "cache_cpu_run_requests")):
                    if f"cache_origin_requests_{what}" in r and count in r:
                        origin += r[f"cache_origin_requests_{what}"]
                        requests += r[count]
            if requests:
                seen[n]["origin_requests_total"] = origin
                seen[n]["measured_requests_total"] = requests
        doc["origin_and_hits_during_runs"] = seen
        doc["checks"] = {n: next((r["cache_check_cpu"] for r in results[n]
                                  if "cache_check_cpu" in r), None)
                         for n in doc["candidates"]}
        pairs = (("portway+cache/portway", CACHE_PORTWAY, CACHE_PROXIED),
                 ("portway+cache/nginx+cache", CACHE_PORTWAY, CACHE_NGINX))
        ratios, per_round = {}, {}
        for label, a, b in pairs:
            if a not in results or b not in results:
                continue
            ma, mb = summary.get(a, {}), summary.get(b, {})
            rb = {r["round"]: r for r in results[b]}
            for key, _, _ in CACHE_METRICS:
                if key in ma and mb.get(key):
                    ratios[f"{label} {key[len('cache_'):]}"] = ma[key] / mb[key]
                rs = [r[key] / rb[r["round"]][key] for r in results[a]
                      if key in r and rb.get(r["round"], {}).get(key)]
                if rs:
                    per_round[f"{label} {key[len('cache_'):]}"] = rs
        doc["ratio_of_medians"] = ratios
        doc["per_round_ratio"] = per_round
        return doc

    def work_summary(self, cands, results, summary):
        """What the workload rows measured, how, issue 13's targets, and the
        ratios: Portway's to each peer (of medians), and each candidate's
        1,000 routes over 1 route (of medians, and per round)."""
        if not self.args.work:
            return {"measured": False, "reason": self.args.work_skipped}
        c = self.counts
        cg = f"under callgrind after a warm-up of {c['warmup']}, h2load --h1 -c {c['cg_c']}"
        doc = {"measured": True,
               "rows": {
                   "work_hdr20": f"GET / with {len(WORK_HEADERS)} headers besides the Host "
                                 f"h2load writes: {c['cg_n']} requests {cg}",
                   "work_route1": f"GET {ROUTE_PATH} through the HTTP/1.1 rows' config (one "
                                  f"route): {c['cg_n']} requests {cg}",
                   "work_routes": f"GET {ROUTE_PATH} through {ROUTE_COUNT:,} prefix routes "
                                  f"/svc0/ .. /svc{ROUTE_COUNT - 1}/ and a catch-all, all to "
                                  f"the one upstream: {c['cg_n']} requests {cg}",
                   "work_big": f"GET {BIG_BODY_PATH}, a {BIG_BODY_BYTES:,}-byte body from the "
                               f"origin, at c{c['big_c']}: {c['big_cg_n']} requests under "
                               f"callgrind, {c['big_cpu_n']} for CPU (after {c['big_warmup']}); "
                               f"every body's size checked",
                   "work_idle10k": f"{c['idle_many']:,} idle keep-alive connections "
                                   f"(idle_conns.py), a fresh proxy"},
               "headers": [f"{k}: {v}" for k, v in WORK_HEADERS],
               "configs": {"routes": {n: f"bench/configs/{f}" for n, f in ROUTES_CONFIGS.items()},
                           "other rows": "the HTTP/1.1 rows' (portway.yaml, nginx.conf, "
                                         "haproxy.cfg)"},
               "candidates": [n for n in cands if n in ROUTES_CONFIGS],
               "targets": WORK_TARGETS}
        ratios = {}
        for peer in ("nginx", "haproxy"):
            a, b = summary.get("portway", {}), summary.get(peer, {})
            for key, _, _ in WORK_METRICS:
                if key not in WORK_OWN_RATIOS and key in a and b.get(key):
                    ratios[f"portway/{peer} {key}"] = a[key] / b[key]
        for n in doc["candidates"]:
            m = summary.get(n, {})
            if m.get("work_route1_instr_per_req") and "work_routes_instr_per_req" in m:
                ratios[f"{n} work_routes_vs_1"] = (m["work_routes_instr_per_req"] /
                                                   m["work_route1_instr_per_req"])
        doc["ratio_of_medians"] = ratios
        doc["routes_vs_1_per_round"] = {
            n: [r["work_routes_vs_1"] for r in results[n] if "work_routes_vs_1" in r]
            for n in doc["candidates"]}
        spills = [(r["work_big_nginx_temp_file_responses"], r["work_big_cpu_run_requests"])
                  for r in results.get("nginx", []) if "work_big_nginx_temp_file_responses" in r]
        if spills:
            doc["nginx_temp_file_responses"] = {"buffered": sum(s for s, _ in spills),
                                                "of": sum(n for _, n in spills)}
        return doc

    def work_targets_line(self, doc):
        """Issue 13's targets next to what this run measured."""
        med = doc["medians"]
        r = doc["workloads"].get("ratio_of_medians", {})
        def said(label, key, target):
            return f"{label} {r[key]:.2f} (target {target})" if key in r else f"{label} n/a"
        parts = []
        for key, label in (("instr_per_req", "HTTP/1.1 c10"), ("instr_per_req_c1", "HTTP/1.1 c1")):
            if key in med.get("portway", {}) and med.get("nginx", {}).get(key):
                parts.append(f"{label} {med['portway'][key] / med['nginx'][key]:.3f} (target ≤ 0.8)")
        parts += [said("20 headers", "portway/nginx work_hdr20_instr_per_req", "≤ 1.0, and ≤ 0.8"),
                  said("1 MiB body", "portway/nginx work_big_instr_per_req", "≤ 0.8")]
        routes = [said(n, f"{n} work_routes_vs_1", "≤ 1.05") if n == "portway" else
                  f"{n} {r[f'{n} work_routes_vs_1']:.2f}" if f"{n} work_routes_vs_1" in r else
                  f"{n} n/a" for n in doc["workloads"].get("candidates", [])]
        pw, ng = med.get("portway", {}), med.get("nginx", {})
        key = "work_idle10k_rss_bytes_per_idle_conn"
        rss = said("portway/nginx", f"portway/nginx {key}", "≤ 1.0")
        if key in pw and key in ng:
            rss += f": {pw[key]:,.0f} vs {ng[key]:,.0f} bytes"
        per = doc["workloads"].get("routes_vs_1_per_round", {}).get("portway", [])
        if len(per) > 1:
            routes.append(f"portway per round {min(per):.3f} to {max(per):.3f}")
        return (f"issue 13 targets (ratios of medians): instructions per request portway/nginx: "
                f"{'; '.join(parts)}. {ROUTE_COUNT:,} routes / 1 route, instructions: "
                f"{'; '.join(routes)}. RSS per idle connection at 10,000: {rss}.")

    def cache_table(self, doc):
        """The cache rows' own table (their candidates are not the other
        rows' columns), the ratios the issue asks for with their targets,
        and how it was measured."""
        cd = doc["cache"]
        med = doc["medians"]
        cols = [(CACHE_PROXIED, "portway (proxied)"), (CACHE_PORTWAY, "portway+cache (HIT)"),
                (CACHE_NGINX, "nginx+cache (HIT)")]
        pairs = [("portway+cache/portway", CACHE_PORTWAY, CACHE_PROXIED),
                 ("portway+cache/nginx+cache", CACHE_PORTWAY, CACHE_NGINX)]
        def cell(c, key, fmt):
            if c not in med:
                return "not run"
            return fmt.format(med[c][key]) if key in med[c] else "n/a"
        def ratio(a, b, key):
            if key in med.get(a, {}) and med.get(b, {}).get(key):
                return f"{med[a][key] / med[b][key]:.2f}"
            return "—"
        lines = ["| cache rows | " + " | ".join([l for _, l in cols] + [p[0] for p in pairs])
                 + " |", "|---|" + "---:|" * (len(cols) + len(pairs))]
        for key, label, fmt in CACHE_METRICS:
            lines.append(f"| {label} | " + " | ".join(
                [cell(c, key, fmt) for c, _ in cols] + [ratio(a, b, key) for _, a, b in pairs])
                + " |")
        seen = cd.get("origin_and_hits_during_runs", {})
        def origin_cell(c):
            if c not in seen:
                return "not run"
            if "measured_requests_total" not in seen[c]:
                return "n/a"
            o, n = seen[c]["origin_requests_total"], seen[c]["measured_requests_total"]
            return f"{o:,} of {n:,}"
        lines.append("| origin requests during the measured runs (stub_status; all runs) | " +
                     " | ".join([origin_cell(c) for c, _ in cols] + ["", ""]) + " |")
        lines.append("")
        r = cd.get("ratio_of_medians", {})
        pr = cd.get("per_round_ratio", {})
        def said(key, target, better):
            if key not in r:
                return f"{key}: n/a"
            text = f"{key} = {r[key]:.2f}"
            if target is not None:
                text += f" (target {better} {target:g})"
            if len(pr.get(key, [])) > 1:
                text += f", per round {min(pr[key]):.2f} to {max(pr[key]):.2f}"
            return text
        lines.append("cache ratios (of medians): " + "; ".join([
            said("portway+cache/portway instr_per_req", 0.5, "≤"),
            said("portway+cache/nginx+cache instr_per_req", 1.0, "≤"),
            said("portway+cache/nginx+cache req_per_s", 1.0, "≥"),
            said("portway+cache/portway req_per_s", None, ""),
            said("portway+cache/nginx+cache cpu_us_per_req", None, "")]) + ".")
        checks = "; ".join(f"{n} {', '.join(f'{k}: {v}' for k, v in ck.items() if k in CACHES.values())}"
                           for n, ck in cd.get("checks", {}).items() if ck and n in CACHES)
        hits = seen.get(CACHE_PORTWAY, {})
        hit_counts = hits.get("cache_hits_cg", []) + hits.get("cache_hits_cpu", [])
        lines.append(
            f"Cache rows: {cd['what']}. Origin: {cd['origin']}. Load: {cd['load']}. Warming: "
            f"{cd['warming']}. Checked before and after each CPU run: {checks or 'n/a'}"
            + (f"; portway.cache counted {min(hit_counts):,}-{max(hit_counts):,} hits per "
               f"measured run" if hit_counts else "") + ".")
        busy = []
        for cand, _ in cols:
            b = [x.get("cache_core_busy_pct") for x in doc["raw"].get(cand, [])
                 if x.get("cache_core_busy_pct")]
            if b:
                busy.append(f"{cand} " + "/".join(f"{k} {v}%" for k, v in b[-1].items()))
        if busy:
            lines.append(f"Core busy % during the last cache CPU run: {'; '.join(busy)}.")
        return lines

    def chain_summary(self, results, summary):
        """The filter chain's cost: portway+chain / portway for every metric,
        as a ratio of medians (what the table shows) and per round (the two
        are measured back to back in each round)."""
        if CHAIN not in results:
            return {"measured": False, "reason": self.args.chain_skipped or "not selected"}
        doc = {"measured": True, "candidate": CHAIN,
               "config": f"bench/configs/{PORTWAYS[CHAIN]}", "filters": CHAIN_FILTERS,
               "not_included": "circuit breaker (not implemented yet)",
               "target_instr_overhead_pct": 10}
        if "portway" not in results:
            doc["reason_no_ratio"] = "bare portway not measured in this run"
            return doc
        med_b, med_c = summary.get("portway", {}), summary.get(CHAIN, {})
        doc["ratio_of_medians"] = {k: med_c[k] / med_b[k] for k, _, _ in METRICS
                                   if k in med_b and k in med_c and med_b[k]}
        bare = {r["round"]: r for r in results["portway"]}
        per_round = {}
        for k, _, _ in METRICS:
            rs = [r[k] / bare[r["round"]][k] for r in results[CHAIN]
                  if k in r and k in bare.get(r["round"], {}) and bare[r["round"]][k]]
            if rs:
                per_round[k] = rs
        doc["per_round_ratio"] = per_round
        if "instr_per_req" in doc["ratio_of_medians"]:
            doc["instr_overhead_pct"] = 100 * (doc["ratio_of_medians"]["instr_per_req"] - 1)
            doc["instr_extra_per_req"] = med_c["instr_per_req"] - med_b["instr_per_req"]
        return doc

    def table(self, doc):
        med = doc["medians"]
        def cell(c, key, fmt):
            if c not in med:
                return "not run"
            if key in med[c]:
                return fmt.format(med[c][key])
            if key.startswith(("syscalls", "ctxsw")) and self.perf_reason:
                return f"n/a (perf unsupported: {self.perf_reason})"
            return "n/a"
        def ratio(a, b, key):
            if a in med and b in med and key in med[a] and key in med[b] and med[b][key]:
                return f"{med[a][key] / med[b][key]:.2f}"
            return "—"
        # The chain's two columns only when it was measured (BENCH_CHAIN=0
        # gives the table as it was before the chain existed).
        chain = CHAIN in doc["order"]
        cols = ["portway"] + ([CHAIN] if chain else []) + ["nginx", "haproxy"]
        ratios = [("portway/nginx", "portway", "nginx"), ("portway/haproxy", "portway", "haproxy")]
        if chain:
            ratios.append(("chain/portway", CHAIN, "portway"))
        # Only the cache rows (--rows cache): their own table alone.
        lines = []
        if any(g in doc.get("rows", ROW_GROUPS) for g in ("h1", "h2", "tls", WORK)):
            lines = ["| metric | " + " | ".join(cols + [r[0] for r in ratios]) + " |",
                     "|---|" + "---:|" * (len(cols) + len(ratios))]
        for key, label, fmt in (METRICS if "h1" in doc.get("rows", ROW_GROUPS) else []):
            lines.append(f"| {label} | " + " | ".join(
                [cell(c, key, fmt) for c in cols] + [ratio(a, b, key) for _, a, b in ratios]) + " |")
        # The HTTP/2 rows: a candidate that is not in a scenario (the chain in
        # both, nginx upstream) says why instead of "n/a".
        h2 = doc.get("http2", {})
        for sc, metrics in ((H2DOWN, H2DOWN_METRICS), (H2UP, H2UP_METRICS)):
            if sc not in h2:
                continue
            for key, label, fmt in metrics:
                cells = []
                for c in cols:
                    if c in med and c not in SCENARIO_CONFIGS[sc]:
                        cells.append("n/a: nginx cannot proxy plain HTTP/2" if c == "nginx"
                                     else "—")
                    else:
                        cells.append(cell(c, key, fmt))
                lines.append(f"| {label} | " + " | ".join(
                    cells + [ratio(a, b, key) for _, a, b in ratios]) + " |")
        def group_rows(metrics, takes_part, own_ratios=()):
            # A row group's rows: "—" for a candidate not in the group (the
            # chain) and in the ratio columns of a row that is a ratio already.
            for key, label, fmt in metrics:
                cells = [("—" if c in med and c not in takes_part else cell(c, key, fmt))
                         for c in cols]
                lines.append(f"| {label} | " + " | ".join(
                    cells + [("—" if key in own_ratios else ratio(a, b, key))
                             for _, a, b in ratios]) + " |")
        tls = doc.get("tls", {})
        if tls.get("measured"):
            group_rows(TLS_METRICS, TLS_CONFIGS)
        work = doc.get("workloads", {})
        if work.get("measured"):
            group_rows(WORK_METRICS, ROUTES_CONFIGS, WORK_OWN_RATIOS)
        ch = doc.get("chain", {})
        if chain:
            if "instr_overhead_pct" in ch:
                pct = ch["instr_overhead_pct"]
                cost = f"{pct:+.1f}%"
            else:
                cost = f"n/a ({ch.get('reason_no_ratio', 'no instruction count')})"
            line = (f"filter chain ({' + '.join(ch.get('filters', CHAIN_FILTERS))}) cost: {cost} "
                    f"instructions per request vs bare portway (target < 10%)")
            per = ch.get("per_round_ratio", {}).get("instr_per_req", [])
            extra = []
            if "instr_extra_per_req" in ch:
                extra.append(f"{ch['instr_extra_per_req']:+,.0f} instructions/request")
            if len(per) > 1:
                extra.append(f"per round {100 * (min(per) - 1):+.1f}% to {100 * (max(per) - 1):+.1f}%")
            if extra:
                line += f" — {'; '.join(extra)}"
            lines.append("")
            lines.append(line + ".")
        elif ch.get("reason"):
            lines.append("")
            lines.append(f"filter chain: not measured ({ch['reason']}).")
        if doc.get("cache", {}).get("measured"):
            lines.append("")
            lines += self.cache_table(doc)
        c = doc["counts"]
        v = doc["versions"]
        busy = []
        for cand in doc["order"]:
            b = [r.get("core_busy_pct") for r in doc["raw"][cand] if r.get("core_busy_pct")]
            if b:
                busy.append(f"{cand} " + "/".join(f"{k} {x}%" for k, x in b[-1].items()))
        lines.append("")
        h1 = "h1" in doc.get("rows", ROW_GROUPS)
        h1_counts = (
            f"Instructions: callgrind, {c['cg_n']} requests at c{c['cg_c']}; syscalls: "
            f"perf stat, {c['sys_n1']} req at c1 and {c['sys_n50']} at c50; CPU: /proc utime+stime, "
            f"{c['cpu_n'] if doc['loadgen'] == 'h2load' else str(c['wrk_secs']) + ' s of wrk'} "
            f"at c{c['cpu_c']}; RSS: {c['idle']} idle connections. ") if h1 else (
            f"Rows: {', '.join(doc.get('rows', []))} only. ")
        lines.append(
            f"Measured {doc['date']} on {doc['cpus']} CPUs ({doc['cpu_model']}, Linux {doc['kernel']}): "
            f"medians of {doc['rounds']} interleaved round(s) ({' → '.join(doc['order'])}); "
            f"each proxy one worker on CPU {doc['proxy_cpu']}, origin (nginx return 200, "
            f"100-byte body) and load on CPU {doc['load_cpu']}; HTTP/1.1 keep-alive both legs, "
            f"logs off. " + h1_counts +
            f"Versions: {'; '.join(f'{k} {x}' for k, x in v.items())}."
            + (" QUICK run (smoke test, not for comparison)." if doc["quick"] else ""))
        if h2.get("measured"):
            lines.append(
                f"HTTP/2 rows: downstream = h2load h2c (prior knowledge) c{c['h2_c']} "
                f"m{c['h2_m']} to each proxy's HTTP/2 listener ({c['cg_n']} requests under "
                f"callgrind, {c['cpu_n']} for CPU), HTTP/1.1 keep-alive to the same origin; "
                f"upstream = the HTTP/1.1 load above (c{c['cg_c']} callgrind, c{c['cpu_c']} CPU) "
                f"through each proxy to an h2c origin: {H2_ORIGIN}. nginx is not in the upstream "
                f"rows: it cannot proxy to plain HTTP/2 (grpc_pass only). portway+chain is not "
                f"in the HTTP/2 rows.")
        elif h2:
            lines.append(f"HTTP/2 rows: not measured ({h2.get('reason')}).")
        if tls.get("measured"):
            checks = "; ".join(
                f"{n} {ck['tickets_sent']} NewSessionTicket, resumed when offered: "
                f"{'yes' if ck['resumed_when_offered'] else 'no'}"
                for n, ck in tls["checks"].items() if ck)
            lines.append(
                f"TLS rows: {tls['parameters']}; certificate: {tls['certificate']}, the same "
                f"file for every candidate (sha256 {str(tls['leaf_sha256'])[:12]}, checked on "
                f"each). Handshake: {tls['loads']['tls_hs']}; keep-alive: "
                f"{tls['loads']['tls_ka']}; HTTP/2: {tls['loads']['tls_h2']}. The origin leg is "
                f"plain HTTP/1.1 keep-alive. Per handshake includes its one proxied request and "
                f"the close. Checked per candidate: {checks or 'n/a'}.")
            tb = []
            for cand in doc["order"]:
                b = [r.get("tls_hs_core_busy_pct") for r in doc["raw"][cand]
                     if r.get("tls_hs_core_busy_pct")]
                if b:
                    tb.append(f"{cand} " + "/".join(f"{k} {x}%" for k, x in b[-1].items()))
            if tb:
                lines.append(f"Core busy % during the last TLS handshake run: {'; '.join(tb)}.")
        elif tls:
            lines.append(f"TLS rows: not measured ({tls.get('reason')}).")
        if work.get("measured"):
            rows = work["rows"]
            lines.append(
                f"Workload rows: 20 headers = {rows['work_hdr20']}; 1 route = "
                f"{rows['work_route1']}; {ROUTE_COUNT:,} routes = {rows['work_routes']} (nginx: "
                f"`location` blocks, HAProxy: a map_beg map file; see bench/README.md); 1 MiB = "
                f"{rows['work_big']}; idle = {rows['work_idle10k']}." + (
                    " nginx buffered {buffered:,} of its {of:,} measured 1 MiB responses to a "
                    "temporary file (proxy_buffering, its default).".format(
                        **work["nginx_temp_file_responses"])
                    if "nginx_temp_file_responses" in work else ""))
            lines.append(self.work_targets_line(doc))
        elif work:
            lines.append(f"Workload rows: not measured ({work.get('reason')}).")
        if busy:
            lines.append(f"Core busy % during the last CPU run: {'; '.join(busy)}.")
        if doc["errors"]:
            lines.append(f"ERRORS ({len(doc['errors'])}): " + " | ".join(doc["errors"]))
        return "\n".join(lines)

    def versions(self, cands):
        v = {}
        def first_line(cmd):
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
                txt = (r.stdout + r.stderr).strip().splitlines()
                if r.returncode != 0 or not txt:
                    return f"(`{' '.join(cmd[-1:])}` exited {r.returncode})"
                return txt[0]
            except OSError:
                return "?"
        if any(c in PORTWAYS for c in cands):
            # No --version flag: identify the build by its binary.
            import hashlib
            path = self.args.portway_bin
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            mtime = datetime.datetime.fromtimestamp(os.path.getmtime(path)).astimezone()
            v["portway"] = (f"{os.path.relpath(path, ROOT)} built "
                            f"{mtime.isoformat(timespec='seconds')} sha256:{h.hexdigest()[:12]}")
        v["nginx"] = first_line(["nginx", "-v"]).replace("nginx version: ", "")
        if "haproxy" in cands:
            v["haproxy"] = first_line(["haproxy", "-v"])
            if self.args.tls:
                try:
                    hv = subprocess.run(["haproxy", "-vv"], capture_output=True, text=True,
                                        timeout=10).stdout
                    m = re.search(r"^Running on OpenSSL version : (.*)$", hv, re.M)
                    if m:
                        v["haproxy"] += f" (TLS: {m.group(1).strip()})"
                except OSError:
                    pass
        v["h2load"] = first_line(["h2load", "--version"])
        if self.args.h2:
            v["nghttpd"] = first_line(["nghttpd", "--version"])
        if self.args.tls:
            v["openssl"] = first_line(["openssl", "version"])
        v["valgrind"] = first_line(["valgrind", "--version"])
        return v

    @staticmethod
    def cpu_model():
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(CANDIDATES),
                    help="comma-separated subset of " + ",".join(CANDIDATES) +
                         " (BENCH_CHAIN=0 removes portway+chain)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--portway-bin", default=os.environ.get(
        "PORTWAY_BIN", os.path.join(ROOT, "build", "bin", "portway")))
    ap.add_argument("--loadgen", choices=["h2load", "wrk"],
                    default=os.environ.get("BENCH_LOADGEN", "h2load"),
                    help="load generator for the CPU/req/s run (default h2load, fixed count)")
    ap.add_argument("--rows", default=os.environ.get("BENCH_ROWS", ",".join(ROW_GROUPS)),
                    help="comma-separated row groups: h1 (the HTTP/1.1 rows), h2 (HTTP/2), "
                         "tls (TLS), cache (cache HITs), work (20 headers, 1,000 routes, "
                         "1 MiB body, 10,000 idle connections); BENCH_H2=0 / BENCH_TLS=0 / "
                         "BENCH_CACHE=0 / BENCH_WORK=0 remove h2 / tls / cache / work")
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--tmp", default=os.environ.get("BENCH_TMP"))
    a = ap.parse_args()
    a.quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    rows = [x.strip() for x in a.rows.split(",") if x.strip()]
    if not rows or any(x not in ROW_GROUPS for x in rows):
        ap.error(f"--rows takes a subset of {','.join(ROW_GROUPS)}")
    a.tls_skipped = None if "tls" in rows else "not in --rows"
    if os.environ.get("BENCH_H2", "1").strip() == "0" and "h2" in rows:
        rows.remove("h2")
    if os.environ.get("BENCH_TLS", "1").strip() == "0" and "tls" in rows:
        rows.remove("tls")
        a.tls_skipped = "BENCH_TLS=0"
    a.cache_skipped = None if CACHE in rows else "not in --rows"
    if os.environ.get("BENCH_CACHE", "1").strip() == "0" and CACHE in rows:
        rows.remove(CACHE)
        a.cache_skipped = "BENCH_CACHE=0"
    a.work_skipped = None if WORK in rows else "not in --rows"
    if os.environ.get("BENCH_WORK", "1").strip() == "0" and WORK in rows:
        rows.remove(WORK)
        a.work_skipped = "BENCH_WORK=0"
    if not rows:
        ap.error("no rows left to measure (--rows / BENCH_H2=0 / BENCH_TLS=0 / BENCH_CACHE=0 / "
                 "BENCH_WORK=0)")
    a.rows = [x for x in ROW_GROUPS if x in rows]
    a.h1, a.h2, a.tls = ("h1" in a.rows), ("h2" in a.rows), ("tls" in a.rows)
    a.cache, a.work = CACHE in a.rows, WORK in a.rows
    if a.rounds is None:
        a.rounds = 1 if a.quick else int(os.environ.get("BENCH_ROUNDS", "5"))
    only = [x.strip() for x in a.only.split(",") if x.strip()]
    bad = [x for x in only if x not in CANDIDATES]
    if bad or not only:
        ap.error(f"--only takes a subset of {','.join(CANDIDATES)}")
    a.only = [c for c in CANDIDATES if c in only]  # keep the interleaving order
    a.chain_skipped = None
    if CHAIN not in a.only:
        a.chain_skipped = "not in --only"
    if os.environ.get("BENCH_CHAIN", "1").strip() == "0":
        a.chain_skipped = "BENCH_CHAIN=0"
        if CHAIN in a.only:
            a.only.remove(CHAIN)
            print(f"bench: BENCH_CHAIN=0: skipping {CHAIN}", file=sys.stderr)
        if not a.only:
            ap.error("nothing left to run: --only named only portway+chain and BENCH_CHAIN=0")
    if not a.h1 and CHAIN in a.only:
        # The chain takes part in the HTTP/1.1 rows only.
        a.chain_skipped = "no HTTP/1.1 rows (--rows)"
    # A candidate in none of the selected row groups (the chain without h1,
    # the caches without cache, nginx and HAProxy with --rows cache) has
    # nothing to measure.
    dropped = [c for c in a.only if not set(CANDIDATE_ROWS[c]) & set(a.rows)]
    a.only = [c for c in a.only if c not in dropped]
    if dropped:
        print(f"bench: not in the selected rows ({','.join(a.rows)}): {', '.join(dropped)}",
              file=sys.stderr)
    if not a.only:
        ap.error(f"nothing left to run: {', '.join(dropped)} take no part in --rows "
                 f"{','.join(a.rows)}")
    if any(c in PORTWAYS for c in a.only) and not os.access(a.portway_bin, os.X_OK):
        print(f"bench: portway binary not found at {a.portway_bin}; build it first "
              f"(or set PORTWAY_BIN), or run with --only nginx,haproxy", file=sys.stderr)
        return 1
    cleanup_tmp = False
    if not a.tmp:
        import tempfile
        a.tmp = tempfile.mkdtemp(prefix="portway-bench.")
        cleanup_tmp = True
    b = Bench(a)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return b.run()
    finally:
        b.stop_all()
        if cleanup_tmp:
            shutil.rmtree(a.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
