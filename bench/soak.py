"""The soak that bench/soak.sh prepares (not part of the tests, not in CI).

For --minutes N (default 10), one cryptr-gateway in front of nginx takes a steady load of valid
and invalid tokens while its issuer's signing key is rotated every minute (publish the next
key, switch signing to it 30 s later, drop the old key at the next publish) and its config file
is rewritten every 30 s. It measures every 10 s the gateway's RSS, open file descriptors, open
connections and requests in flight, and checks:

- no valid request failed (every one answered 200), from wrk's stream and the checker's;
- no invalid request passed (every one answered 401);
- RSS and file descriptors flat: the median of the last 2 minutes within 10% of the median of
  minutes 2-4 (after warm-up);
- every config rewrite applied (reload counter, and the toggled route seen to change), none
  refused; every JWKS fetch succeeded and every new key set was fetched before it was needed;
- nothing left open (connections, requests in flight) once the load stops.

Writes bench/SOAK.md; exits 1 when a criterion fails. See SOAK.md for the timing argument."""
import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import jwt  # PyJWT
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
AUDIENCE = "http://localhost:8080"
COURSES = [{"id": 1, "title": "learn git", "soak": True}]

# The issuer's JWKS settings (README: `jwks:`). No Cache-Control comes from nginx, so `ttl`
# is the freshness and the background refresh runs every 4/5 of it: every 24 s.
JWKS_TTL = 30
JWKS_MIN_TTL = 10
MIN_REFRESH_INTERVAL = 5
REFRESH_PERIOD = JWKS_TTL * 4 / 5

# The rotation timeline, in seconds within each minute of the soak.
ROTATE_EVERY = 60
PUBLISH_AT = 0  # JWKS becomes {K[m], K[m+1]}: K[m+1] published, K[m-1] removed
SWITCH_AT = 30  # signing (checker and wrk) moves from K[m] to K[m+1]
RELOADS_AT = (15, 45)  # config rewritten
PREV_KEY_PROBE_FOR = 25  # after a switch, the previous key's token is still sent this long
RETIRED_PROBE_AFTER = 30  # a removed key's token is sent (expecting 401) this long after removal
SAMPLE_EVERY = 10
# After the load, how long the descriptors may take to come back: the upstream pool closes a
# connection idle for 60 s (src/proxy.rs) at its next check, which runs every 60 s: up to 120 s.
SETTLE_WITHIN = 130
CHECK_EVERY = 1.0

LUA = r"""-- written by bench/soak.py: cycles the tokens of $TOKENS ("-" = no Authorization header),
-- waits $PAUSE_MS between a response and the next request on each connection, and tallies
-- every status and error code; done() prints them as SOAK lines.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
local expect = tonumber(os.getenv("EXPECT"))
local pause = tonumber(os.getenv("PAUSE_MS"))
local i = 0
statuses = {}
codes = {}
odd = {}
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  i = math.random(#tokens)
end

function request()
  i = i % #tokens + 1
  if tokens[i] == "-" then
    return wrk.format("GET", nil, {})
  end
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end

function delay()
  return pause
end

function response(status, headers, body)
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
  local c = body and string.match(body, '"code"%s*:%s*"([^"]*)"')
  if c then codes[c] = (codes[c] or 0) + 1 end
  if status ~= expect and #odd < 10 then
    odd[#odd + 1] = k .. " " .. string.gsub(string.sub(body or "", 1, 200), "[\r\n]", " ")
  end
end

function done(summary, latency, requests)
  local st, cd = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do st[k] = (st[k] or 0) + v end
    for k, v in pairs(t:get("codes")) do cd[k] = (cd[k] or 0) + v end
    for _, v in ipairs(t:get("odd")) do io.write("SOAK odd ", v, "\n") end
  end
  for k, v in pairs(st) do io.write("SOAK status ", k, " ", v, "\n") end
  for k, v in pairs(cd) do io.write("SOAK code ", k, " ", v, "\n") end
  local e = summary.errors
  io.write("SOAK errors ", e.connect, " ", e.read, " ", e.write, " ", e.timeout, "\n")
  io.write("SOAK summary ", summary.requests, " ", summary.duration, "\n")
  io.write("SOAK latency ", latency:percentile(50), " ", latency:percentile(99), " ", latency.max, "\n")
end
"""


# ---------------------------------------------------------------------------------------------
# Small helpers (the port helpers are bench.py's)

from bench import Servers, free_port, machine, wait_port  # noqa: E402  (bench/ is on sys.path: this file's folder)


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64u(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def proc_status(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def proc_cpu_seconds(pid):
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(admin_port):
    """The admin /metrics as {(name, frozenset(labels)): value}."""
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = METRIC_LINE.match(line)
        if not m:
            continue
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            pass
    return out


def metric_sum(metrics, name, **want):
    total = 0.0
    for (n, labels), v in metrics.items():
        if n != name:
            continue
        d = dict(labels)
        if all(d.get(k) == val for k, val in want.items()):
            total += v
    return total


def metric_rows(metrics, name):
    return [(dict(labels), v) for (n, labels), v in metrics.items() if n == name]


# ---------------------------------------------------------------------------------------------
# Keys and tokens


class Key:
    def __init__(self, index):
        self.index = index
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = f"soak-{index}-{os.urandom(4).hex()}"
        pub = self.private.public_key().public_numbers()
        self.jwk = {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": int_b64u(pub.n), "e": int_b64u(pub.e)}


class Minter:
    def __init__(self, iss):
        self.iss = iss
        self.counter = 0
        self.lock = threading.Lock()

    def claims(self, **over):
        with self.lock:
            self.counter += 1
            n = self.counter
        now = int(time.time())
        c = {
            "iss": self.iss, "aud": AUDIENCE, "sub": f"user-{n}", "email": f"user{n}@example.com", "tnt": "bench",
            "cid": "bench", "scp": ["openid", "email"], "jti": f"soak-{n}", "jtt": "access", "ver": 1,
            "iat": now, "exp": now + 7200,
        }
        c.update(over)
        return c

    def valid(self, key, **over):
        claims = self.claims(**over)
        return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid, "iss": claims["iss"]})

    def invalid(self, kind, key):
        """A token that must be refused with 401, of one kind."""
        now = int(time.time())
        if kind == "bad_signature":
            h, p, s = self.valid(key).split(".")
            i = len(s) // 2
            s = s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]
            return f"{h}.{p}.{s}"
        if kind == "tampered_payload":
            h, _, s = self.valid(key).split(".")
            forged = self.claims(sub="admin", email="admin@example.com")
            return f"{h}.{b64u(json.dumps(forged).encode())}.{s}"
        if kind == "expired":
            return self.valid(key, iat=now - 7200, exp=now - 3600)
        if kind == "wrong_audience":
            return self.valid(key, aud="https://evil.example")
        if kind == "wrong_issuer":
            return self.valid(key, iss=self.iss.rsplit("/", 1)[0] + "/other")
        if kind == "alg_none":
            header = {"alg": "none", "typ": "JWT", "kid": key.kid}
            return f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(self.claims()).encode())}."
        if kind == "hs256_with_public_key":
            # Alg confusion: HMAC keyed with the issuer's public key (PyJWT refuses to, so by hand).
            header = b64u(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
            payload = b64u(json.dumps(self.claims()).encode())
            secret = json.dumps(key.jwk).encode()
            mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            return f"{header}.{payload}.{b64u(mac)}"
        if kind == "garbage":
            return "not-a-jwt"
        if kind == "no_token":
            return None
        raise ValueError(kind)


INVALID_KINDS = ["bad_signature", "tampered_payload", "expired", "wrong_audience", "wrong_issuer",
                 "alg_none", "hs256_with_public_key", "garbage", "no_token"]


# ---------------------------------------------------------------------------------------------
# The soak


class Soak:
    def __init__(self, args):
        self.args = args
        self.binary = str((ROOT / args.binary).resolve())
        self.duration = args.minutes * 60
        self.work = Path(tempfile.mkdtemp(prefix="cryptr-soak-"))
        self.work.chmod(0o755)  # nginx's workers must read the files
        self.servers = Servers()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t0 = None  # monotonic start of the soak
        self.wall0 = None
        # Shared state (under self.lock).
        self.signing = 0
        self.switched_at = None  # rel time of the last switch
        self.reused = {}  # key index -> a token reused by the checker (and later, the retired probe)
        self.removed = {}  # key index -> rel time removed from the JWKS
        self.extra_route = False  # the toggled route's state once a reload is confirmed; None while unsure
        # Results.
        self.records = []  # checker: (t, cls, name, status, code, ok)
        self.failures = []  # every unexpected answer, with detail
        self.samples = []
        self.events = []  # (rel, wall, kind, detail)
        self.segments = []  # wrk segments' results
        self.reloads = []  # (i, latency or None, extra)
        self.published = []  # (wall time, ETag) of each publish during the soak

    # --- processes

    def start(self, name, cmd, port, **kw):
        return self.servers.start(name, cmd, port, **kw)

    def stop_all(self):
        self.servers.stop()

    def rel(self):
        return time.monotonic() - self.t0

    def event(self, kind, detail=""):
        rel = self.rel() if self.t0 is not None else -1.0
        self.events.append((rel, time.time(), kind, detail))
        print(f"[{rel:7.1f}s] {kind} {detail}", flush=True)

    # --- setup

    def setup(self):
        a = self.args
        n_keys = a.minutes + 2
        print(f"generating {n_keys} RSA 2048 keys in {self.work}", flush=True)
        self.keys = [Key(i) for i in range(n_keys)]
        self.up_port, self.jwks_port, self.gw_port, self.admin_port = (free_port() for _ in range(4))
        self.iss = f"http://127.0.0.1:{self.jwks_port}/t/bench"
        self.minter = Minter(self.iss)

        www = self.work / "www"
        (www / "api/v1").mkdir(parents=True)
        (www / "api/v1/courses").write_text(json.dumps(COURSES))
        (www / "public").mkdir()
        (www / "public/courses").write_text(json.dumps(COURSES))
        (www / "extra").mkdir()
        (www / "extra/ok").write_text(json.dumps({"extra": True}))
        (www / "t/bench").mkdir(parents=True)
        self.jwks_file = www / "t/bench/.well-known"
        self.publish([0])

        nginx_conf = self.work / "nginx.conf"
        nginx_conf.write_text(f"""
worker_processes 1;
pid {self.work}/nginx.pid;
error_log {self.work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  default_type application/json;
  keepalive_requests 1000000;
  log_format soak '$msec $status $body_bytes_sent $sent_http_etag';
  server {{ listen 127.0.0.1:{self.up_port}; root {www}; }}
  server {{ listen 127.0.0.1:{self.jwks_port}; root {www}; access_log {self.work}/jwks.log soak; }}
}}
""")
        self.start("nginx", ["nginx", "-c", str(nginx_conf), "-g", "daemon off;"], self.up_port, log=self.work / "nginx.out")
        wait_port(self.jwks_port)

        self.config = self.work / "conf" / "gateway.yaml"
        self.config.parent.mkdir()
        self.reload_count = 0
        self.write_config(0, extra=False)
        env = dict(os.environ)
        env.pop("RUST_LOG", None)  # the default level (info): an access line per request, as in production
        self.gw = self.start("cryptr-gateway", [self.binary, "--log-format", "json", "run", "-c", str(self.config)],
                             self.gw_port, log=self.work / "gateway.log", env=env)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.get_status(self.admin_port, "/readyz") == 200:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the gateway never became ready (see gateway.log)")
        time.sleep(1)
        self.idle = self.sample("idle (before load)")
        self.lua = self.work / "soak.lua"
        self.lua.write_text(LUA)
        self.prepare_segment(0)

    def get_status(self, port, path):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            return r.status
        except OSError:
            return None

    def publish(self, indexes):
        tmp = self.jwks_file.with_name(".well-known.tmp")
        tmp.write_text(json.dumps({"keys": [self.keys[i].jwk for i in indexes]}))
        os.replace(tmp, self.jwks_file)
        # nginx's ETag for the file (mtime and size, in hex): tells which set each fetch got.
        st = self.jwks_file.stat()
        return f"{int(st.st_mtime):x}-{st.st_size:x}"

    def write_config(self, i, extra):
        extra_route = f"""  - name: extra
    match: {{ prefix: /extra }}
    upstream: http://127.0.0.1:{self.up_port}
    auth: none
""" if extra else ""
        text = f"""# bench/soak.py: revision {i}, written at {time.strftime('%H:%M:%S')}; the extra route is {'on' if extra else 'off'}
listen: 127.0.0.1:{self.gw_port}
admin: {{ listen: "127.0.0.1:{self.admin_port}" }}
issuers:
  bench:
    cryptr: {{ base_url: "http://127.0.0.1:{self.jwks_port}", tenants: [bench] }}
    audiences: ["{AUDIENCE}"]
    claims_to_headers: {{ sub: X-User-Id, email: X-User-Email }}
    jwks: {{ ttl: {JWKS_TTL}s, min_ttl: {JWKS_MIN_TTL}s, min_refresh_interval: {MIN_REFRESH_INTERVAL}s }}
routes:
  - name: public
    match: {{ prefix: /public }}
    upstream: http://127.0.0.1:{self.up_port}
    auth: none
{extra_route}  - name: api
    match: {{ prefix: / }}
    upstream: http://127.0.0.1:{self.up_port}
    auth: {{ issuers: [bench] }}
"""
        # As an editor saves: a new file renamed over the old one, in the watched folder.
        tmp = self.config.with_name(".gateway.yaml.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config)

    # --- wrk segments: one per signing key, started at its switch

    def prepare_segment(self, k):
        key = self.keys[k]
        valid = self.work / f"seg{k}-valid.txt"
        valid.write_text("\n".join(self.minter.valid(key) for _ in range(self.args.tokens)) + "\n")
        invalid = []
        for j in range(self.args.tokens // 2):
            t = self.minter.invalid(INVALID_KINDS[j % len(INVALID_KINDS)], key)
            invalid.append(t if t is not None else "-")
        bad = self.work / f"seg{k}-invalid.txt"
        bad.write_text("\n".join(invalid) + "\n")
        with self.lock:
            self.reused[k] = self.minter.valid(key)

    def start_segment(self, k):
        procs = {}
        for stream, conns, expect in (("valid", self.args.valid_conns, 200), ("invalid", self.args.invalid_conns, 401)):
            env = dict(os.environ, TOKENS=str(self.work / f"seg{k}-{stream}.txt"), EXPECT=str(expect),
                       PAUSE_MS=str(self.args.pause_ms))
            cmd = ["wrk", "-t1", f"-c{conns}", "-d3600s", "--timeout", "10s", "--latency", "-s", str(self.lua),
                   f"http://127.0.0.1:{self.gw_port}/api/v1/courses"]
            procs[stream] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        return {"key": k, "start": self.rel(), "procs": procs}

    def end_segment(self, seg):
        for p in seg["procs"].values():
            p.send_signal(signal.SIGINT)
        seg["end"] = self.rel()
        for stream, p in seg["procs"].items():
            out = p.communicate(timeout=30)[0]
            seg[stream] = parse_soak_lines(out)
            seg[stream]["rc"] = p.returncode
        del seg["procs"]
        self.segments.append(seg)
        v, i = seg["valid"], seg["invalid"]
        secs = max(seg["end"] - seg["start"], 1e-9)
        print(f"          segment K{seg['key']}: valid {v['requests']} ({v['requests'] / secs:.0f}/s, not 200: "
              f"{v['requests'] - v['statuses'].get('200', 0)}, socket errors {sum(v['errors'])}), invalid {i['requests']} "
              f"(not 401: {i['requests'] - i['statuses'].get('401', 0)})", flush=True)

    # --- the checker: every second, a handful of valid and invalid requests, each recorded

    def checker(self):
        conn = None
        tick = 0
        while not self.stop.is_set():
            tick += 1
            target = tick * CHECK_EVERY
            delay = target - self.rel()
            if delay > 0 and self.stop.wait(delay):
                break
            now = self.rel()
            with self.lock:
                k = self.signing
                key = self.keys[k]
                reused = self.reused.get(k)
                prev = self.reused.get(k - 1) if k > 0 and self.switched_at is not None and now - self.switched_at <= PREV_KEY_PROBE_FOR else None
                retired = [i for i, at in self.removed.items() if now - at >= RETIRED_PROBE_AFTER]
                retired_token = self.reused.get(max(retired)) if retired else None
                extra = self.extra_route
            plan = []  # (class, name, path, token, expected status)
            for n in range(self.args.fresh_per_tick):
                plan.append(("valid", "fresh token, current key", "/api/v1/courses", self.minter.valid(key), 200))
            plan.append(("valid", "reused token, current key", "/api/v1/courses", reused, 200))
            if prev:
                plan.append(("valid", "previous key, still published", "/api/v1/courses", prev, 200))
            plan.append(("valid", "public route", "/public/courses", None, 200))
            if extra is True:
                plan.append(("valid", "toggled route (on)", "/extra/ok", None, 200))
            elif extra is False:
                plan.append(("invalid", "toggled route (off): no token", "/extra/ok", None, 401))
            for kind in INVALID_KINDS:
                plan.append(("invalid", kind, "/api/v1/courses", self.minter.invalid(kind, key), 401))
            if retired_token:
                plan.append(("invalid", "removed key (accepted before)", "/api/v1/courses", retired_token, 401))
            for cls, name, path, token, expected in plan:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                status, code, body = None, "", ""
                for attempt in (1, 2):
                    try:
                        if conn is None:
                            conn = http.client.HTTPConnection("127.0.0.1", self.gw_port, timeout=10)
                        conn.request("GET", path, headers=headers)
                        r = conn.getresponse()
                        raw = r.read()
                        status = r.status
                        body = raw[:300].decode(errors="replace")
                        if status >= 400:
                            try:
                                code = json.loads(raw).get("code", "")
                            except ValueError:
                                code = "?"
                        elif status == 200 and path != "/extra/ok" and not same_json(raw, COURSES):
                            status, code = -1, "wrong body"
                        break
                    except (OSError, http.client.HTTPException) as e:
                        if conn is not None:
                            conn.close()
                        conn = None
                        # A keep-alive connection the server closed before our request: one retry on a
                        # new connection, and the close itself is recorded (never hidden).
                        if attempt == 2 or not isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)):
                            status, code = -2, f"{type(e).__name__}: {e}"
                            break
                        self.failures.append((self.rel(), "note", name, "keep-alive connection closed by the gateway; retried", ""))
                ok = status == expected
                rec = (round(now, 1), cls, name, status, code, ok)
                self.records.append(rec)
                if not ok:
                    self.failures.append((round(self.rel(), 2), cls, name, f"{status} {code} (expected {expected})", body))
                    print(f"[{self.rel():7.1f}s] UNEXPECTED {cls} {name}: {status} {code} (expected {expected}) {body[:120]}", flush=True)
        if conn is not None:
            conn.close()

    # --- the sampler: every 10 s

    def sample(self, label=None):
        pid = self.gw.pid
        m = scrape(self.admin_port)
        s = {
            "t": round(self.rel(), 1) if self.t0 is not None else None,
            "label": label,
            "rss_kib": proc_status(pid, "VmRSS"),
            "hwm_kib": proc_status(pid, "VmHWM"),
            "fds": fd_count(pid),
            "threads": proc_status(pid, "Threads"),
            "cpu_s": proc_cpu_seconds(pid),
            "conns": metric_sum(m, "cryptr_gateway_connections_open"),
            "in_flight": metric_sum(m, "cryptr_gateway_requests_in_flight"),
            "reload_ok": metric_sum(m, "cryptr_gateway_config_reloads_total", result="success"),
            "reload_fail": metric_sum(m, "cryptr_gateway_config_reloads_total", result="failure"),
            "jwks_ok": metric_sum(m, "cryptr_gateway_jwks_fetches_total", result="success"),
            "jwks_fail": metric_sum(m, "cryptr_gateway_jwks_fetches_total") - metric_sum(m, "cryptr_gateway_jwks_fetches_total", result="success"),
            "jwks_keys": metric_sum(m, "cryptr_gateway_jwks_keys"),
            "requests": metric_sum(m, "cryptr_gateway_requests_total"),
            "signing": self.signing,
            "metrics": m,
        }
        return s

    def sampler(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            if n * SAMPLE_EVERY > self.duration + 0.5:
                break
            delay = n * SAMPLE_EVERY - self.rel()
            if delay > 0 and self.stop.wait(delay):
                break
            if self.gw.poll() is not None:
                self.event("GATEWAY EXITED", f"rc {self.gw.returncode}")
                self.stop.set()
                break
            s = self.sample()
            self.samples.append(s)
            print(f"[{s['t']:7.1f}s] sample: RSS {s['rss_kib'] / 1024:.1f} MiB, fds {s['fds']}, conns {s['conns']:.0f}, "
                  f"in flight {s['in_flight']:.0f}, reloads {s['reload_ok']:.0f}/{s['reload_fail']:.0f} failed, "
                  f"JWKS fetches {s['jwks_ok']:.0f}/{s['jwks_fail']:.0f} failed, CPU {s['cpu_s']:.1f}s", flush=True)

    # --- the scheduler: rotations and reloads

    def reload(self):
        self.reload_count += 1
        i = self.reload_count
        extra = i % 2 == 1
        before = metric_sum(scrape(self.admin_port), "cryptr_gateway_config_reloads_total", result="success")
        with self.lock:
            self.extra_route = None
        t = time.monotonic()
        self.write_config(i, extra)
        latency = None
        while time.monotonic() - t < 10:
            if metric_sum(scrape(self.admin_port), "cryptr_gateway_config_reloads_total", result="success") > before:
                latency = time.monotonic() - t
                break
            time.sleep(0.05)
        self.reloads.append((i, latency, extra))
        if latency is not None:
            with self.lock:
                self.extra_route = extra
        self.event("reload", f"#{i} (extra route {'on' if extra else 'off'}): "
                   + (f"applied after {latency * 1000:.0f} ms" if latency is not None else "NOT APPLIED within 10 s"))

    def run(self):
        events = []
        for m in range(self.args.minutes):
            base = m * ROTATE_EVERY
            events.append((base + PUBLISH_AT, "publish", m))
            for r in RELOADS_AT:
                events.append((base + r, "reload", None))
            events.append((base + SWITCH_AT, "switch", m))
        events.sort(key=lambda e: e[0])

        self.t0 = time.monotonic()
        self.wall0 = time.time()
        seg = self.start_segment(0)
        self.event("start", f"signing with K0 ({self.keys[0].kid}); JWKS {{K0}}")
        threads = [threading.Thread(target=self.checker, daemon=True), threading.Thread(target=self.sampler, daemon=True)]
        for t in threads:
            t.start()
        try:
            for at, kind, m in events:
                if self.stop.wait(max(0.0, at - self.rel())):
                    break
                if kind == "publish":
                    published = [m, m + 1]
                    etag = self.publish(published)
                    self.published.append((time.time(), etag))
                    with self.lock:
                        if m >= 1:
                            self.removed[m - 1] = self.rel()
                    self.event("publish", f"JWKS {{K{m}, K{m + 1}}}: K{m + 1} ({self.keys[m + 1].kid}) published"
                               + (f", K{m - 1} removed" if m >= 1 else ""))
                    self.prepare_segment(m + 1)
                elif kind == "switch":
                    new = self.start_segment(m + 1)
                    with self.lock:
                        self.signing = m + 1
                        self.switched_at = self.rel()
                    self.event("switch", f"signing with K{m + 1}")
                    time.sleep(0.3)  # the two segments overlap a moment: no gap in the load
                    self.end_segment(seg)
                    seg = new
                elif kind == "reload":
                    self.reload()
            self.stop.wait(max(0.0, self.duration - self.rel()))
            threads[1].join(timeout=15)  # the sampler's last sample, at the end, still under load
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=30)
            self.end_segment(seg)
            self.event("load stopped")
        if self.gw.poll() is not None:
            raise SystemExit(f"the gateway exited during the soak (rc {self.gw.returncode}); see {self.work}/gateway.log")
        # Once the load is gone: nothing may stay open or in flight.
        time.sleep(3)
        self.after = self.sample("after the load stopped (3 s)")
        self.event("after", f"conns {self.after['conns']:.0f}, in flight {self.after['in_flight']:.0f}, fds {self.after['fds']}")
        self.final_metrics = self.after["metrics"]
        # Once the upstream pool has closed its idle connections, the descriptors must be back to
        # what the gateway held before the load.
        stopped = time.monotonic() - 3
        while True:
            time.sleep(5)
            waited = time.monotonic() - stopped
            if fd_count(self.gw.pid) <= self.idle["fds"] + 1 or waited >= SETTLE_WITHIN:
                break
        self.settle_s = waited
        self.settled = self.sample(f"after the load stopped ({waited:.0f} s)")
        self.event("settled", f"after {waited:.0f} s: conns {self.settled['conns']:.0f}, in flight {self.settled['in_flight']:.0f}, "
                   f"fds {self.settled['fds']} (idle before load: {self.idle['fds']}), RSS {self.settled['rss_kib'] / 1024:.1f} MiB")
        self.gw_pid = self.gw.pid
        t = time.monotonic()
        self.gw.send_signal(signal.SIGTERM)
        try:
            self.gw_rc = self.gw.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.gw_rc = None
        self.shutdown_s = time.monotonic() - t
        self.event("gateway stopped", f"rc {self.gw_rc} after {self.shutdown_s:.2f}s")


def same_json(raw, want):
    try:
        return json.loads(raw) == want
    except ValueError:
        return False


def parse_soak_lines(out):
    res = {"statuses": {}, "codes": {}, "odd": [], "errors": [0, 0, 0, 0], "requests": 0, "duration_s": 0.0,
           "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan"), "raw_tail": out[-600:]}
    for line in out.splitlines():
        if not line.startswith("SOAK "):
            continue
        _, what, rest = line.split(" ", 2)
        if what == "status":
            k, v = rest.split()
            res["statuses"][k] = res["statuses"].get(k, 0) + int(v)
        elif what == "code":
            k, v = rest.rsplit(" ", 1)
            res["codes"][k] = res["codes"].get(k, 0) + int(v)
        elif what == "odd":
            res["odd"].append(rest)
        elif what == "errors":
            res["errors"] = [int(x) for x in rest.split()]
        elif what == "summary":
            r, d = rest.split()
            res["requests"], res["duration_s"] = int(r), int(d) / 1e6
        elif what == "latency":
            p50, p99, mx = (float(x) / 1000 for x in rest.split())
            res["p50_ms"], res["p99_ms"], res["max_ms"] = p50, p99, mx
    return res


# ---------------------------------------------------------------------------------------------
# Report


def median_in(samples, key, lo, hi):
    vals = [s[key] for s in samples if lo <= s["t"] <= hi]
    return (statistics.median(vals), min(vals), max(vals), len(vals)) if vals else (float("nan"), float("nan"), float("nan"), 0)


def slope_per_min(samples, key, lo):
    pts = [(s["t"], s[key]) for s in samples if s["t"] >= lo]
    if len(pts) < 3:
        return float("nan")
    mx = statistics.mean(p[0] for p in pts)
    my = statistics.mean(p[1] for p in pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den * 60 if den else float("nan")


def jwks_fetch_times(work):
    log = work / "jwks.log"
    out = []
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                # nginx writes the ETag's quotes as \x22.
                etag = parts[3].replace("\\x22", "").strip('"') if len(parts) > 3 else ""
                out.append((float(parts[0]), parts[1], etag))
    return out


def gateway_log_summary(work):
    levels, access, messages = {}, {}, {}
    log = work / "gateway.log"
    if not log.exists():
        return levels, access, messages
    with log.open() as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                messages[("raw", line.strip()[:160])] = messages.get(("raw", line.strip()[:160]), 0) + 1
                continue
            lvl = e.get("level", "?")
            levels[lvl] = levels.get(lvl, 0) + 1
            if e.get("target") == "access":
                k = (e.get("route"), e.get("status"), e.get("auth"))
                access[k] = access.get(k, 0) + 1
            else:
                k = (lvl, e.get("message", "")[:160])
                messages[k] = messages.get(k, 0) + 1
    return levels, access, messages



def git_rev():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src", "Cargo.toml", "Cargo.lock"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return rev + (" with uncommitted changes in src/" if dirty else "")
    except OSError:
        return "?"


def report(s, cmdline):
    a = s.args
    D = s.duration
    samples = s.samples
    # Windows for flatness.
    if a.minutes >= 6:
        base_lo, base_hi, end_lo, end_hi = 120, 240, D - 120, D
        windows = "minutes 2-4 (after warm-up) against the last 2 minutes"
    else:
        base_lo, base_hi, end_lo, end_hi = D * 0.2, D * 0.4, D * 0.6, D
        windows = "the second fifth of the run against its last two fifths (a short run)"
    rss_b = median_in(samples, "rss_kib", base_lo, base_hi)
    rss_e = median_in(samples, "rss_kib", end_lo, end_hi)
    fd_b = median_in(samples, "fds", base_lo, base_hi)
    fd_e = median_in(samples, "fds", end_lo, end_hi)
    rss_change = rss_e[0] / rss_b[0] - 1 if rss_b[3] and rss_e[3] else float("nan")
    fd_change = fd_e[0] - fd_b[0] if fd_b[3] and fd_e[3] else float("nan")
    rss_slope = slope_per_min(samples, "rss_kib", base_lo)
    fd_slope = slope_per_min(samples, "fds", base_lo)

    # Requests.
    wv = {"requests": 0, "ok": 0, "bad": 0, "socket": 0}
    wi = {"requests": 0, "ok": 0, "passed": 0, "other": 0, "socket": 0}
    wi_codes, wv_odd, wi_odd = {}, [], []
    seg_rows = []
    for seg in s.segments:
        v, i = seg["valid"], seg["invalid"]
        v_ok = v["statuses"].get("200", 0)
        v_sock = sum(v["errors"])
        i_401 = i["statuses"].get("401", 0)
        i_pass = sum(n for k, n in i["statuses"].items() if k.startswith(("2", "3")))
        wv["requests"] += v["requests"]
        wv["ok"] += v_ok
        wv["bad"] += v["requests"] - v_ok
        wv["socket"] += v_sock
        wi["requests"] += i["requests"]
        wi["ok"] += i_401
        wi["passed"] += i_pass
        wi["other"] += i["requests"] - i_401 - i_pass
        wi["socket"] += sum(i["errors"])
        for k, n in i["codes"].items():
            wi_codes[k] = wi_codes.get(k, 0) + n
        wv_odd += v["odd"]
        wi_odd += i["odd"]
        secs = max(seg["end"] - seg["start"], 1e-9)
        seg_rows.append((seg, secs, v_ok, v["requests"] - v_ok + v_sock, i_401, i["requests"] - i_401 + sum(i["errors"]), v["requests"] / secs))
    ck = {}
    for t, cls, name, status, code, ok in s.records:
        d = ck.setdefault((cls, name), {"n": 0, "ok": 0, "statuses": {}, "codes": {}})
        d["n"] += 1
        d["ok"] += ok
        d["statuses"][status] = d["statuses"].get(status, 0) + 1
        if code:
            d["codes"][code] = d["codes"].get(code, 0) + 1
    ck_valid = sum(d["n"] for (c, _), d in ck.items() if c == "valid")
    ck_valid_fail = sum(d["n"] - d["ok"] for (c, _), d in ck.items() if c == "valid")
    ck_invalid = sum(d["n"] for (c, _), d in ck.items() if c == "invalid")
    ck_invalid_passed = sum(n for (c, _), d in ck.items() if c == "invalid" for st, n in d["statuses"].items() if isinstance(st, int) and 200 <= st < 400)
    ck_invalid_other = sum(d["n"] - d["ok"] for (c, _), d in ck.items() if c == "invalid") - ck_invalid_passed
    notes = [f for f in s.failures if f[1] == "note"]

    valid_total = wv["requests"] + ck_valid
    valid_fail = wv["bad"] + wv["socket"] + ck_valid_fail
    invalid_total = wi["requests"] + ck_invalid
    invalid_passed = wi["passed"] + ck_invalid_passed
    invalid_other = wi["other"] + wi["socket"] + ck_invalid_other

    # Reloads and JWKS.
    fm = s.final_metrics
    reload_ok = metric_sum(fm, "cryptr_gateway_config_reloads_total", result="success")
    reload_fail = metric_sum(fm, "cryptr_gateway_config_reloads_total", result="failure")
    reload_lat = [r[1] for r in s.reloads if r[1] is not None]
    reloads_missed = [r[0] for r in s.reloads if r[1] is None]
    jwks_rows = metric_rows(fm, "cryptr_gateway_jwks_fetches_total")
    jwks_ok = sum(v for l, v in jwks_rows if l.get("result") == "success")
    jwks_bad = sum(v for l, v in jwks_rows if l.get("result") != "success")
    fetches = jwks_fetch_times(s.work)
    fetches_during = [f for f in fetches if s.wall0 <= f[0] <= s.wall0 + D]
    fetch_non200 = [f for f in fetches if f[1] != "200"]
    publishes = [(rel, wall, d) for rel, wall, k, d in s.events if k == "publish"]
    switches = [e for e in s.events if e[2] == "switch"]
    removals = sum(1 for p in publishes if "removed" in p[2])
    fetch_delays = []  # publish -> the first fetch that got the published set (by its ETag)
    for wall, etag in s.published:
        got = [f[0] for f in fetches if f[2] == etag and f[1] == "200"]
        fetch_delays.append(got[0] - wall if got else float("inf"))
    needed_by = SWITCH_AT - PUBLISH_AT
    levels, access, messages = gateway_log_summary(s.work)
    forced = sum(n for (lvl, msg), n in messages.items() if "unknown key id" in msg)
    warn_msgs = {k: n for k, n in messages.items() if k[0] in ("WARN", "ERROR", "raw")}
    access_5xx = sum(n for (route, st, auth), n in access.items() if isinstance(st, int) and st >= 500)
    gw_status = {}
    for l, v in metric_rows(fm, "cryptr_gateway_requests_total"):
        k = (l.get("route"), l.get("status"))
        gw_status[k] = gw_status.get(k, 0) + v
    auth_fail = {l.get("reason"): v for l, v in metric_rows(fm, "cryptr_gateway_auth_failures_total")}
    min_seg_rate = min((r[6] for r in seg_rows), default=0.0)

    crit = []

    def c(name, ok, detail):
        crit.append((name, bool(ok), detail))

    c("No failed valid request", valid_fail == 0 and valid_total > 0,
      f"{valid_total:,} valid requests, {valid_fail} not answered 200 (wrk: {wv['bad']} non-200 + {wv['socket']} socket errors; checker: {ck_valid_fail})")
    c("No invalid request passed", invalid_passed == 0 and invalid_total > 0,
      f"{invalid_total:,} invalid requests, {invalid_passed} answered 2xx/3xx")
    c("Every invalid request refused with 401", invalid_other == 0,
      f"{invalid_other} answered something else than 401 or failed at the socket")
    c("RSS flat within 10%", abs(rss_change) <= 0.10,
      f"median {rss_b[0] / 1024:.1f} MiB in {base_lo:.0f}-{base_hi:.0f}s, {rss_e[0] / 1024:.1f} MiB in {end_lo:.0f}-{end_hi:.0f}s: {rss_change * 100:+.1f}%")
    c("File descriptors flat (no growth)", fd_e[0] <= fd_b[2],
      f"median {fd_b[0]:.0f} (range {fd_b[1]:.0f}-{fd_b[2]:.0f}) in {base_lo:.0f}-{base_hi:.0f}s, median {fd_e[0]:.0f} "
      f"(range {fd_e[1]:.0f}-{fd_e[2]:.0f}) in {end_lo:.0f}-{end_hi:.0f}s: {fd_change:+.0f}; the end median must stay within "
      f"the range of minutes 2-4")
    c("Every config rewrite reloaded, none refused",
      reload_ok == len(s.reloads) and reload_fail == 0 and not reloads_missed,
      f"{len(s.reloads)} rewrites, reloads_total success {reload_ok:.0f}, failure {reload_fail:.0f}; toggled route checked {sum(d['n'] for (c_, n_), d in ck.items() if n_.startswith('toggled'))} times")
    c("Every rotation fetched in time, no JWKS fetch failed",
      jwks_bad == 0 and not fetch_non200 and all(d < needed_by for d in fetch_delays) and len(fetch_delays) == a.minutes,
      f"{len(publishes)} publishes; new set fetched {min(fetch_delays, default=0):.1f}-{max(fetch_delays, default=0):.1f}s after publishing (needed within {needed_by}s); fetch failures {jwks_bad:.0f}")
    c(f"Valid load of at least {a.min_valid_rate}/s through every rotation", min_seg_rate >= a.min_valid_rate and len(seg_rows) >= a.minutes,
      f"slowest wrk segment: {min_seg_rate:.0f} valid requests/s; {len(seg_rows)} segments")
    c("Nothing left open once the load stopped",
      s.after["conns"] == 0 and s.after["in_flight"] == 0 and s.settled["fds"] <= s.idle["fds"] + 1,
      f"3 s after: connections_open {s.after['conns']:.0f}, requests_in_flight {s.after['in_flight']:.0f}; {s.settle_s:.0f} s after: "
      f"fds {s.settled['fds']} against {s.idle['fds']} before the load (allowed: +1; waited at most {SETTLE_WITHIN} s)")
    c("Gateway up throughout, clean shutdown", s.gw_rc == 0 and not any(e[2] == "GATEWAY EXITED" for e in s.events),
      f"one process (pid {s.gw_pid}) for the whole run; SIGTERM: exit {s.gw_rc} after {s.shutdown_s:.2f}s")
    passed = all(ok for _, ok, _ in crit)

    m = machine(("nginx", "wrk"))
    L = []
    L += ["# Soak results", "",
          f"Made by `{cmdline}` on {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(s.wall0))} against "
          f"cryptr-gateway at {git_rev()}. Machine: {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}, shared with "
          f"other work; {m['nginx']}; {m['wrk']}. Not part of the tests or CI.", "",
          f"**Verdict: {'PASS' if passed else 'FAIL'}** ({sum(ok for _, ok, _ in crit)}/{len(crit)} criteria).", "",
          "| criterion | verdict | figures |", "| --- | --- | --- |"]
    for name, ok, detail in crit:
        L.append(f"| {name} | {'pass' if ok else '**FAIL**'} | {detail} |")
    L += ["", "## Figures", "",
          f"- Duration: {a.minutes} min of load ({D} s), {len(s.samples)} samples every {SAMPLE_EVERY} s.",
          f"- Valid requests: {valid_total:,} ({valid_total / D:.0f}/s): wrk {wv['requests']:,} on `/api/v1/courses` with "
          f"{a.tokens} tokens per signing key, checker {ck_valid:,}. Failed: {valid_fail}.",
          f"- Invalid requests: {invalid_total:,} ({invalid_total / D:.0f}/s): wrk {wi['requests']:,}, checker {ck_invalid:,}. "
          f"Passed: {invalid_passed}; refused otherwise than 401: {invalid_other}.",
          f"- RSS: idle before load {s.idle['rss_kib'] / 1024:.1f} MiB; first sample {samples[0]['rss_kib'] / 1024:.1f} MiB, "
          f"last {samples[-1]['rss_kib'] / 1024:.1f} MiB; median {rss_b[0] / 1024:.1f} MiB (min {rss_b[1] / 1024:.1f}, max {rss_b[2] / 1024:.1f}) "
          f"in {base_lo:.0f}-{base_hi:.0f}s against {rss_e[0] / 1024:.1f} MiB (min {rss_e[1] / 1024:.1f}, max {rss_e[2] / 1024:.1f}) "
          f"in {end_lo:.0f}-{end_hi:.0f}s: {rss_change * 100:+.1f}%; trend after warm-up {rss_slope:+.0f} KiB/min; "
          f"peak (VmHWM) {s.after['hwm_kib'] / 1024:.1f} MiB; {s.settled['rss_kib'] / 1024:.1f} MiB {s.settle_s:.0f} s after the load stopped.",
          f"- File descriptors: idle {s.idle['fds']}; median {fd_b[0]:.0f} (min {fd_b[1]:.0f}, max {fd_b[2]:.0f}) in "
          f"{base_lo:.0f}-{base_hi:.0f}s against {fd_e[0]:.0f} (min {fd_e[1]:.0f}, max {fd_e[2]:.0f}) in {end_lo:.0f}-{end_hi:.0f}s; "
          f"trend {fd_slope:+.2f}/min; {s.after['fds']} 3 s after the load stopped, {s.settled['fds']} {s.settle_s:.0f} s after.",
          f"- Connections open (gateway metric): median {statistics.median(x['conns'] for x in samples):.0f}, max "
          f"{max(x['conns'] for x in samples):.0f}; requests in flight: max {max(x['in_flight'] for x in samples):.0f}; "
          f"after the load: {s.after['conns']:.0f} and {s.after['in_flight']:.0f}.",
          f"- Gateway CPU: {s.after['cpu_s'] - s.idle['cpu_s']:.1f} s over the run ({(s.after['cpu_s'] - s.idle['cpu_s']) / D * 100:.0f}% of one core).",
          f"- Config reloads: {len(s.reloads)} rewrites, `config_reloads_total` success {reload_ok:.0f}, failure {reload_fail:.0f}; "
          f"applied {min(reload_lat, default=0) * 1000:.0f}-{max(reload_lat, default=0) * 1000:.0f} ms after the write "
          f"(median {statistics.median(reload_lat) * 1000 if reload_lat else 0:.0f} ms); not applied: {reloads_missed or 'none'}.",
          f"- Rotations: {len(publishes)} publishes, {len(switches)} signing switches, {removals} removals "
          f"({len(s.keys) - 1} keys used). The gateway first fetched each published set (nginx's ETag in its log) this long after the publish: "
          + ", ".join(f"{d:.1f}" for d in fetch_delays) + " s.",
          f"- JWKS fetches: `jwks_fetches_total` success {jwks_ok:.0f}, other {jwks_bad:.0f} (whole life: start, background, "
          f"unknown-kid); the JWKS server logged {len(fetches)} GETs, {len(fetches_during)} during the {D} s "
          f"({len(fetches_during) / (D / 60):.1f}/min), non-200: {len(fetch_non200)}; "
          f"unknown-kid refetches logged by the gateway: {forced}. Bound: one background fetch per {REFRESH_PERIOD:.0f} s "
          f"plus one unknown-kid refetch per {MIN_REFRESH_INTERVAL} s, i.e. at most "
          f"{60 / REFRESH_PERIOD + 60 / MIN_REFRESH_INTERVAL:.1f}/min.",
          f"- Gateway log: {sum(levels.values()):,} lines ({', '.join(f'{k} {v:,}' for k, v in sorted(levels.items()))}); "
          f"access lines with status 5xx: {access_5xx}.", ""]

    L += ["## How the soak works", "",
          "One cryptr-gateway (release build, `--log-format json`, default log level `info`) in front of one nginx "
          "(worker_processes 1) that serves both the upstream (`/api/v1/courses`, `/public/courses`, `/extra/ok`) and, on a "
          "port of its own with an access log, the Cryptr-shaped JWKS at `/t/bench/.well-known`. The issuer is configured as "
          f"Cryptr's (`cryptr: {{ base_url, tenants: [bench] }}`) with `jwks: {{ ttl: {JWKS_TTL}s, min_ttl: {JWKS_MIN_TTL}s, "
          f"min_refresh_interval: {MIN_REFRESH_INTERVAL}s }}`. nginx sends no `Cache-Control`, so each key set is fresh for "
          f"`ttl` = {JWKS_TTL} s and the gateway's background refresh fetches again at four fifths of it: every "
          f"{REFRESH_PERIOD:.0f} s (plus the fetch's own few milliseconds).", "",
          "### Rotation, every minute (as Cryptr rotates)", "",
          f"Keys K0, K1, ... (RSA 2048, `kid` `soak-<n>-<random>`). Before the soak the JWKS is {{K0}} and tokens are signed "
          "with K0. In minute m of the soak:", "",
          f"1. at m:{PUBLISH_AT:02d}, **publish**: the JWKS becomes {{K[m], K[m+1]}}: K[m+1] is added and K[m-1], which "
          "nobody has signed with for 30 s, is removed (the file is replaced atomically);",
          f"2. at m:{SWITCH_AT:02d}, **switch**: every client signs with K[m+1] from now on (the checker mints with it; a "
          "new wrk segment starts with tokens signed by it and the previous one is stopped 0.3 s later);",
          f"3. at (m+1):{PUBLISH_AT:02d}, K[m] is removed, 30 s after the last token signed with it was minted.", "",
          "Why a correct gateway has zero failures:", "",
          f"- *A new key is known before any token uses it.* The background refresh fetches every {REFRESH_PERIOD:.0f} s, so "
          f"a fetch falls within any {REFRESH_PERIOD:.0f} s window (plus a few ms); the switch comes {SWITCH_AT - PUBLISH_AT} s "
          f"after the publish, {SWITCH_AT - PUBLISH_AT - REFRESH_PERIOD:.0f} s of margin. The unknown-kid refetch (at most one "
          f"per {MIN_REFRESH_INTERVAL} s) is a second line only: the design never depends on it, because anyone sending "
          f"unknown kids (the checker's removed-key probe does, every second) can spend that allowance just before a "
          "legitimate new-kid token arrives, and that token would then be refused until the next allowed refetch. "
          "Signing with a key the moment it is published would make correctness depend on that rate-limited path.",
          f"- *An old key stays published while tokens signed by it are in use.* Clients stop using K[m] tokens at the "
          f"switch (m:{SWITCH_AT:02d}); K[m] leaves the JWKS at (m+1):{PUBLISH_AT:02d}, and the gateway can only learn of "
          f"the removal by a fetch after that. The checker keeps sending one K[m] token for {PREV_KEY_PROBE_FOR} s after "
          "the switch (expecting 200), then stops, 5 s before the removal.",
          f"- *A removed key is refused once the gateway has fetched the new set.* {RETIRED_PROBE_AFTER} s after a "
          "removal (more than one refresh period), the checker sends, every second, a token that was accepted before and "
          "is signed by the removed key: it must be refused (401 `no_rsa_key`), even though the token cache once held it "
          "(entries are dropped when the key set changes).",
          "- Each publish also changes the set the gateway has cached for the wrk tokens in use, so every rotation "
          "invalidates the token cache under load.",
          f"- Measured: for each publish, the first JWKS GET that got the published set (the JWKS server logs each GET's "
          f"time and the file's ETag); the criterion requires it within the {SWITCH_AT - PUBLISH_AT} s the design relies on. "
          "The checker's ticks fall on the publish instants, so its removed-key probe often forces a refetch in the same "
          "few milliseconds as the publish: a forced refetch racing a key-set change, every minute.", "",
          "### Load", "",
          f"- **wrk, valid stream** (volume for the no-failure claim): `wrk -t1 -c{a.valid_conns}` on `/api/v1/courses`, a "
          f"Lua script (written to the work folder) that cycles {a.tokens} distinct tokens signed with the current key, waits "
          f"{a.pause_ms} ms between a response and the next request on each connection (a steady rate, not a flood), "
          "and tallies every status and error code. wrk cannot reload a token file, so it runs in **segments, one per "
          "signing key**: each starts at its key's switch and ends 0.3 s after the next switch, so every segment runs "
          "through one publish (a key added, another removed, the token cache invalidated) and one or two config "
          "reloads. Every answer must be 200; wrk's socket errors count as failures.",
          f"- **wrk, invalid stream**: `wrk -t1 -c{a.invalid_conns}`, same segments, {a.tokens // 2} tokens per segment "
          f"cycling through {', '.join(INVALID_KINDS)}, all minted with the current key so that each reaches the check it "
          "targets rather than the unknown-kid path. Every answer must be 401.",
          f"- **Python checker** (`http.client`, one keep-alive connection), every second: {a.fresh_per_tick} freshly "
          "minted tokens (never seen, so never cached) and one reused token signed by the current key, the previous key's "
          "token during the overlap, the public route, the toggled route, and one of each invalid kind, plus the removed "
          "key's token; every answer and its error code are recorded. A valid answer must also carry the upstream's body.", "",
          "### Config reload, every 30 s", "",
          f"At m:{RELOADS_AT[0]:02d} and m:{RELOADS_AT[1]:02d} (away from publishes and switches, so that a failure points "
          "at one cause), the config is rewritten the way editors save (a new file renamed over the old one, in the "
          "watched folder) with a new comment and the `extra` public route (`/extra`) toggled. The soak waits for "
          "`config_reloads_total{result=\"success\"}` to increase (applied latency in the figures), then the checker "
          "expects `/extra/ok` to answer 200 (route on) or 401 `authorization_header_missing` (off: the catch-all "
          "protected route takes it). Issuers are unchanged, so the reload must keep the key sets and refresh schedule.", "",
          "### Measurements", "",
          f"Every {SAMPLE_EVERY} s: VmRSS and VmHWM from `/proc/<pid>/status`, open descriptors (`/proc/<pid>/fd`), "
          "threads, CPU time, and from `/metrics`: `connections_open`, `requests_in_flight`, reload and JWKS fetch "
          f"counters. Flatness compares {windows}: the RSS medians must be within 10% of each other; the descriptors' median "
          "at the end must stay within the range seen in minutes 2-4. The descriptor count includes the client connections, "
          "the JWKS connection and the upstream pool's connections, which the pool opens and closes with demand and which a "
          "reload (a new plan, a new pool) and a wrk segment restart move: it swings by about ten at a constant load, so a "
          "median-to-median tolerance of a few would judge sampling phase, not leaks. The leak check proper comes after the "
          f"load: within {SETTLE_WITHIN} s of its end (the upstream pool closes a connection idle for 60 s at its next check, "
          "every 60 s) the gateway must hold no more descriptors than before the load (+1 for the JWKS keep-alive "
          f"connection), after {len(s.reloads)} reloads and {len(publishes)} rotations.", ""]

    L += ["## wrk segments (one per signing key)", "",
          "| segment | from-to (s) | valid 200 | valid failed | valid/s | p50 / p99 / max ms (valid) | invalid 401 | invalid other |",
          "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for seg, secs, v_ok, v_bad, i_ok, i_bad, rate in seg_rows:
        v = seg["valid"]
        L.append(f"| K{seg['key']} | {seg['start']:.1f}-{seg['end']:.1f} | {v_ok:,} | {v_bad} | {rate:.0f} | "
                 f"{v['p50_ms']:.2f} / {v['p99_ms']:.2f} / {v['max_ms']:.1f} | {i_ok:,} | {i_bad} |")
    L += ["", f"wrk invalid stream, error codes: " + ", ".join(f"`{k}` {n:,}" for k, n in sorted(wi_codes.items())) + ".", ""]
    if wv_odd or wi_odd:
        L += ["Unexpected wrk answers (first ones):", ""] + [f"- valid: `{x}`" for x in wv_odd[:10]] + [f"- invalid: `{x}`" for x in wi_odd[:10]] + [""]

    L += ["## Checker (every second)", "", "| class | request | sent | as expected | statuses | codes |", "| --- | --- | ---: | ---: | --- | --- |"]
    for (cls, name), d in sorted(ck.items()):
        L.append(f"| {cls} | {name} | {d['n']:,} | {d['ok']:,} | " + ", ".join(f"{k}: {v}" for k, v in sorted(d["statuses"].items(), key=str))
                 + " | " + ", ".join(f"`{k}` {v}" for k, v in sorted(d["codes"].items())) + " |")
    L.append("")
    real_fail = [f for f in s.failures if f[1] != "note"]
    if real_fail:
        L += ["Unexpected checker answers:", ""] + [f"- {t}s {cls} {name}: {what} `{body[:150]}`" for t, cls, name, what, body in real_fail[:30]] + [""]
    if notes:
        L += [f"Keep-alive connections closed by the gateway under the checker (retried once on a new connection): {len(notes)}.", ""]

    L += ["## The gateway's own count", "",
          "`requests_total` by route and status at the end (it would also count requests wrk abandoned when a segment stopped): "
          + ", ".join(f"{r}/{st}: {int(v):,}" for (r, st), v in sorted(gw_status.items(), key=lambda x: (str(x[0][0]), str(x[0][1])))) + ".",
          "`auth_failures_total` by reason: " + ", ".join(f"`{k}` {int(v):,}" for k, v in sorted(auth_fail.items())) + ".", ""]
    if warn_msgs:
        L += ["Warnings and errors the gateway logged:", ""] + [f"- {lvl} ×{n}: {msg}" for (lvl, msg), n in sorted(warn_msgs.items(), key=lambda x: -x[1])[:20]] + [""]
    else:
        L += ["The gateway logged no warning or error.", ""]

    L += ["## Events", "", "| t (s) | event |", "| ---: | --- |"]
    for rel, wall, kind, detail in s.events:
        L.append(f"| {rel:.1f} | {kind} {detail} |")
    L += ["", "## Samples", "",
          "| t (s) | RSS MiB | fds | threads | conns open | in flight | CPU s | reloads ok/failed | JWKS fetches ok/failed | keys | signing |",
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |"]
    for x in [s.idle] + samples + [s.after, s.settled]:
        t = x["label"] or f"{x['t']:.0f}"
        L.append(f"| {t} | {x['rss_kib'] / 1024:.1f} | {x['fds']} | {x['threads']} | {x['conns']:.0f} | {x['in_flight']:.0f} | "
                 f"{x['cpu_s']:.1f} | {x['reload_ok']:.0f}/{x['reload_fail']:.0f} | {x['jwks_ok']:.0f}/{x['jwks_fail']:.0f} | "
                 f"{x['jwks_keys']:.0f} | K{x['signing']} |")
    L.append("")
    return passed, "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/cryptr-gateway")
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--valid-conns", type=int, default=4, help="wrk connections of the valid stream")
    ap.add_argument("--invalid-conns", type=int, default=2, help="wrk connections of the invalid stream")
    ap.add_argument("--pause-ms", type=int, default=15, help="wrk pause between a response and the next request, per connection")
    ap.add_argument("--tokens", type=int, default=400, help="valid tokens per wrk segment (half as many invalid)")
    ap.add_argument("--fresh-per-tick", type=int, default=3, help="fresh valid tokens the checker sends every second")
    ap.add_argument("--min-valid-rate", type=int, default=20, help="valid requests/s every wrk segment must reach")
    ap.add_argument("--out", default=str(BENCH / "SOAK.md"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, token files)")
    args = ap.parse_args()
    if args.minutes < 2:
        raise SystemExit("--minutes must be at least 2")
    cmdline = "bash bench/soak.sh" + (f" --minutes {args.minutes}" if args.minutes != 10 else "")
    s = Soak(args)
    signal.signal(signal.SIGTERM, lambda *_: s.stop.set())
    try:
        s.setup()
        s.run()
    except KeyboardInterrupt:
        s.stop.set()
        raise
    finally:
        s.stop_all()
    passed, text = report(s, cmdline)
    Path(args.out).write_text(text)
    print(text)
    dump = s.work / "soak.json"
    dump.write_text(json.dumps({"samples": [{k: v for k, v in x.items() if k != "metrics"} for x in s.samples],
                                "records": s.records, "events": s.events, "published": s.published, "segments": s.segments, "reloads": s.reloads,
                                "failures": s.failures}, default=str))
    if args.keep or not passed:
        print(f"work folder kept: {s.work}")
    else:
        shutil.rmtree(s.work, ignore_errors=True)
    print(f"\nsoak: {'PASS' if passed else 'FAIL'}; wrote {args.out}")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
