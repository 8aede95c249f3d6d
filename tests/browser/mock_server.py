#!/usr/bin/env python3
"""Stand-in for merit's admin API, for working on api/assets/dashboard.html
without building the real server.  Python 3 standard library only.

It also documents the JSON contract the dashboard expects:

  GET    /dashboard                      the page (api/assets/dashboard.html)
  POST   /api/v1/admin/stream-ticket     {"ticket","expires_at"}: opens the SSE stream once, for 30 s
  GET    /dashboard/events?ticket=K      SSE: `event: overview` + `data: <Overview>` every 2 s
  GET    /api/v1/admin/overview          <Overview>
  GET    /api/v1/sagas?page=&page_size=  {"items":[Saga],"page","page_size","total"}
  GET    /api/v1/sagas/{id}              Saga + "steps":[Step]
  POST   /api/v1/sagas/{id}/retry        202 {"id","state":"running"}; 409 unless failed/stuck
  GET    /api/v1/dlq?page=&page_size=    {"items":[DeadLetter],...}
  POST   /api/v1/dlq/{id}/replay         {"replayed":1}; 404 when unknown
  DELETE /api/v1/dlq/{id}                {"discarded":1}; 404 when unknown
  GET    /api/v1/config/versions?page=&page_size=   {"items":[ConfigVersion],...}, newest first
  GET    /api/v1/config/diff?from=A&to=B {"from":A,"to":B,"changes":[{"path","op","from","to"}]}
  POST   /api/v1/config/rollback         body {"version":N,"author","reason"} -> new ConfigVersion (201)

Every /api/v1 call needs the admin token (Authorization: Bearer T); the SSE
stream needs a ticket from /api/v1/admin/stream-ticket (never the token in the
URL); otherwise 401 with
{"error":{"code":"unauthorized","message":"..."}}.  Errors are always
{"error":{"code":"...","message":"..."}}.

  python3 tests/browser/mock_server.py --token secret [--port 0] [--no-sse]

prints `listening on http://127.0.0.1:PORT` once it is ready.  --no-sse makes
/dashboard/events answer 503, to see the page fall back to polling.
"""

import argparse
import copy
import datetime as dt
import json
import os
import random
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.normpath(os.path.join(HERE, "..", "..", "api", "assets", "dashboard.html"))
NS = uuid.UUID("6d3c1a8e-5c1e-4b55-9d1a-0f6f0b7d2a11")
START = time.time()


def iso(t):
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def uid(name):
    return str(uuid.uuid5(NS, name))


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.tickets = {}
        self.rng = random.Random(7)
        now = time.time()
        self.nodes = [
            {"node_id": "node-1", "address": "127.0.0.1:8080", "version": "0.1.0", "started": now - 3 * 3600 - 420, "lag": 1, "healthy": True, "shards": 12},
            {"node_id": "node-2", "address": "127.0.0.1:8081", "version": "0.1.0", "started": now - 3 * 3600 - 95, "lag": 2, "healthy": True, "shards": 11},
            {"node_id": "node-3", "address": "127.0.0.1:8082", "version": "0.1.0", "started": now - 600, "lag": 14, "healthy": False, "shards": 9},
        ]
        self.queues = {"merit.user.0": 5, "merit.user.1": 2, "merit.governance.0": 41, "merit.achievement.0": 0, "merit.notify.0": 130}
        self.config_version = 3
        self.configs = {
            1: {"cluster": {"heartbeat_ms": 1000, "shards": 32}, "passivation": {"idle_s": 300}, "dlq": {"max_attempts": 5}},
            2: {"cluster": {"heartbeat_ms": 1000, "shards": 32}, "passivation": {"idle_s": 120}, "dlq": {"max_attempts": 5}, "cache": {"l1_size": 10000}},
            3: {"cluster": {"heartbeat_ms": 500, "shards": 32}, "passivation": {"idle_s": 120}, "dlq": {"max_attempts": 8}, "cache": {"l1_size": 20000}},
        }
        self.versions = [
            {"version": 1, "author": "bootstrap", "reason": "initial configuration", "created_at": iso(now - 9 * 86400), "rollback_of": None},
            {"version": 2, "author": "alice", "reason": "shorter passivation for user actors; enable L1 cache", "created_at": iso(now - 4 * 86400), "rollback_of": None},
            {"version": 3, "author": "bob", "reason": "faster heartbeats, more DLQ retries", "created_at": iso(now - 2 * 3600), "rollback_of": None},
        ]
        kinds = ["achievement_unlock", "governance_tally", "user_merge", "reward_payout"]
        states = ["completed"] * 9 + ["running", "running", "compensated", "failed", "stuck", "compensating"]
        self.sagas = []
        for i in range(27):
            st = states[i % len(states)]
            kind = kinds[i % len(kinds)]
            created = now - 60 * (i * 7 + 3)
            steps_names = ["reserve", "apply", "notify", "confirm"]
            reached = {"completed": 4, "running": 2, "compensated": 3, "failed": 3, "stuck": 2, "compensating": 3}[st]
            steps = []
            for j, name in enumerate(steps_names[:reached]):
                last = j == reached - 1
                s_state = "done"
                err = None
                attempts = 1
                if last and st == "running":
                    s_state = "running"
                elif last and st in ("failed", "stuck"):
                    s_state = "failed"
                    attempts = 3 if st == "failed" else 1
                    err = "broker publish timed out after 5s" if st == "stuck" else "storage: unique constraint violated on achievements(user_id, code)"
                elif st in ("compensated", "compensating") and last:
                    s_state = "compensated" if st == "compensated" else "compensating"
                    err = "downstream rejected: insufficient merit balance"
                started = created + j * 2.5
                steps.append({"name": name, "state": s_state, "attempts": attempts, "last_error": err,
                              "started_at": iso(started), "finished_at": None if s_state in ("running", "compensating") or (st == "stuck" and last) else iso(started + 0.4 + j * 0.3)})
            cur = steps[-1]
            self.sagas.append({"id": uid("saga-%d" % i), "kind": kind, "state": st, "step": cur["name"],
                               "attempts": max(s["attempts"] for s in steps), "last_error": cur["last_error"],
                               "created_at": iso(created), "updated_at": iso(created + reached * 2.5), "steps": steps})
        self.dlq = []
        reasons = [
            ("governance.vote.cast", "malformed", "payload is not valid JSON: expected value at line 1 column 1", "{not json"),
            ("user.profile.updated", "handler_error", "actor user/4411 returned error: version conflict (expected 7, got 9)", json.dumps({"user_id": 4411, "version": 7, "display_name": "Grace <script>alert(1)</script>"})),
            ("achievement.unlock.requested", "expired", "message ttl exceeded (300 s) before delivery", json.dumps({"user_id": 17, "achievement": "first_vote", "requested_at": iso(now - 900)})),
            ("governance.proposal.closed", "max_attempts", "gave up after 8 attempts: storage unavailable", json.dumps({"proposal_id": 91, "closed_by": "timer"})),
            ("notify.email.send", "handler_error", "smtp: 421 too many connections", json.dumps({"to": "ops@example.org", "template": "weekly_digest"})),
        ]
        for i, (rk, cls, reason, body) in enumerate(reasons):
            self.dlq.append({"id": uid("dlq-%d" % i), "routing_key": rk, "reason_class": cls, "reason": reason,
                             "attempts": 0 if cls == "malformed" else (8 if cls == "max_attempts" else 3),
                             "dead_lettered_at": iso(now - 3600 * (i + 1) - 17 * i), "body": body})

    # -- views -------------------------------------------------------------
    def overview(self):
        with self.lock:
            now = time.time()
            for q in self.queues:
                self.queues[q] = max(0, self.queues[q] + self.rng.randint(-4, 6))
            nodes = [{"node_id": n["node_id"], "address": n["address"], "version": n["version"],
                      "started_at": iso(n["started"]), "heartbeat_at": iso(now - n["lag"] - self.rng.random()),
                      "healthy": n["healthy"], "shards": n["shards"]} for n in self.nodes]
            counts = {k: 0 for k in ("running", "compensating", "completed", "compensated", "failed", "stuck")}
            for s in self.sagas:
                counts[s["state"]] = counts.get(s["state"], 0) + 1
            counts["completed"] += 1200
            services = []
            for kind in ("user", "governance", "achievement"):
                for shard in range(2):
                    services.append({"name": "consumer.%s.%d" % (kind, shard), "state": "running", "restarts": 0, "last_error": None})
            services[3] = {"name": "consumer.governance.1", "state": "restarting", "restarts": 4, "last_error": "channel closed by broker: PRECONDITION_FAILED"}
            services += [
                {"name": "cluster.heartbeat", "state": "running", "restarts": 0, "last_error": None},
                {"name": "cluster.rebalancer", "state": "running", "restarts": 1, "last_error": "lease lost during rebalance"},
                {"name": "outbox.relay", "state": "running", "restarts": 0, "last_error": None},
                {"name": "saga.recovery", "state": "failed", "restarts": 7, "last_error": "database: connection refused (os error 111)"},
            ]
            return {
                "node_id": "node-1", "version": "0.1.0", "config_version": self.config_version,
                "generated_at": iso(now),
                "nodes": nodes,
                "status": {
                    "node_id": "node-1", "healthy": True,
                    "dependencies": [["database", True], ["broker", True], ["redis", False]],
                    "services": services,
                    "registries": [
                        {"kind": "user", "resident": 1200 + self.rng.randint(0, 30), "inflight": self.rng.randint(0, 9), "activations": 5004, "passivations": 3780},
                        {"kind": "governance", "resident": 84, "inflight": 1, "activations": 310, "passivations": 226},
                        {"kind": "achievement", "resident": 402, "inflight": 0, "activations": 1900, "passivations": 1498},
                    ],
                    "config_version": self.config_version,
                    "cache": {"l1_hits": 18230, "l1_misses": 2041, "l2_hits": 1622, "l2_misses": 419, "redis": False},
                },
                "queues": [{"name": k, "ready": v} for k, v in self.queues.items()],
                "sagas": counts,
                "dlq_total": len(self.dlq),
            }


def page_of(items, qs, default_size):
    try:
        page = max(1, int(qs.get("page", ["1"])[0]))
        size = max(1, min(500, int(qs.get("page_size", [str(default_size)])[0])))
    except ValueError:
        raise ApiErr(400, "bad_request", "page and page_size must be positive integers")
    start = (page - 1) * size
    return {"items": items[start:start + size], "page": page, "page_size": size, "total": len(items)}


class ApiErr(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def diff(a, b, path=""):
    out = []
    for k in sorted(set(a) | set(b)):
        p = path + "." + k if path else k
        if k not in a:
            out.append({"path": p, "op": "add", "to": b[k]})
        elif k not in b:
            out.append({"path": p, "op": "remove", "from": a[k]})
        elif isinstance(a[k], dict) and isinstance(b[k], dict):
            out += diff(a[k], b[k], p)
        elif a[k] != b[k]:
            out.append({"path": p, "op": "replace", "from": a[k], "to": b[k]})
    return out


def make_handler(state, token, sse_enabled, stop):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "merit-mock/0.1"

        def log_message(self, fmt, *args):  # quiet; never echo query strings (the SSE token)
            pass

        def send_json(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def authed(self, qs):
            return self.headers.get("Authorization", "") == "Bearer " + token

        def body_json(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise ApiErr(400, "bad_request", "request body is not valid JSON")

        def do_GET(self):
            self.route("GET")

        def do_POST(self):
            self.route("POST")

        def do_DELETE(self):
            self.route("DELETE")

        def route(self, method):
            u = urlsplit(self.path)
            qs = parse_qs(u.query)
            parts = [unquote(p) for p in u.path.split("/") if p]
            try:
                if method == "GET" and u.path == "/dashboard":
                    with open(PAGE, "rb") as f:
                        body = f.read()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if method == "GET" and u.path == "/dashboard/events":
                    ticket = qs.get("ticket", [None])[0]
                    with state.lock:
                        until = state.tickets.pop(ticket, 0) if ticket else 0
                    if until < time.time():
                        raise ApiErr(401, "unauthorized", "ticket unknown, used or expired")
                    if not sse_enabled:
                        raise ApiErr(503, "unavailable", "live updates are switched off (--no-sse)")
                    return self.sse()
                if parts[:2] != ["api", "v1"]:
                    raise ApiErr(404, "not_found", "no route for %s %s" % (method, u.path))
                if not self.authed(qs):
                    raise ApiErr(401, "unauthorized", "missing or invalid admin token")
                self.send_json(*self.api(method, parts[2:], qs))
            except ApiErr as e:
                try:
                    self.send_json(e.status, {"error": {"code": e.code, "message": e.message}})
                except OSError:
                    pass
            except (BrokenPipeError, ConnectionResetError):
                pass

        def api(self, method, p, qs):
            if method == "GET" and p == ["admin", "overview"]:
                return 200, state.overview()
            if method == "POST" and p == ["admin", "stream-ticket"]:
                ticket = uuid.uuid4().hex
                with state.lock:
                    state.tickets[ticket] = time.time() + 30
                return 200, {"ticket": ticket, "expires_at": iso(time.time() + 30)}
            if p[:1] == ["sagas"]:
                with state.lock:
                    if method == "GET" and len(p) == 1:
                        items = sorted(state.sagas, key=lambda s: s["updated_at"], reverse=True)
                        return 200, page_of([{k: v for k, v in s.items() if k != "steps"} for s in items], qs, 20)
                    saga = next((s for s in state.sagas if len(p) > 1 and s["id"] == p[1]), None)
                    if saga is None:
                        raise ApiErr(404, "not_found", "no saga with that id")
                    if method == "GET" and len(p) == 2:
                        return 200, copy.deepcopy(saga)
                    if method == "POST" and len(p) == 3 and p[2] == "retry":
                        if saga["state"] not in ("failed", "stuck"):
                            raise ApiErr(409, "conflict", "saga is %s; only failed or stuck sagas can be retried" % saga["state"])
                        saga["state"] = "running"
                        saga["updated_at"] = iso(time.time())
                        saga["steps"][-1].update(state="running", finished_at=None)
                        return 202, {"id": saga["id"], "state": "running"}
            if p[:1] == ["dlq"]:
                with state.lock:
                    if method == "GET" and len(p) == 1:
                        return 200, page_of(list(state.dlq), qs, 50)
                    idx = next((i for i, m in enumerate(state.dlq) if len(p) > 1 and m["id"] == p[1]), None)
                    if idx is None:
                        raise ApiErr(404, "not_found", "no dead letter with that id")
                    if method == "POST" and len(p) == 3 and p[2] == "replay":
                        del state.dlq[idx]
                        return 200, {"replayed": 1}
                    if method == "DELETE" and len(p) == 2:
                        del state.dlq[idx]
                        return 200, {"discarded": 1}
            if p[:1] == ["config"]:
                with state.lock:
                    if method == "GET" and p == ["config", "versions"]:
                        return 200, page_of(sorted(state.versions, key=lambda v: -v["version"]), qs, 20)
                    if method == "GET" and p == ["config", "diff"]:
                        try:
                            a, b = int(qs["from"][0]), int(qs["to"][0])
                        except (KeyError, ValueError):
                            raise ApiErr(400, "bad_request", "from and to must be version numbers")
                        if a not in state.configs or b not in state.configs:
                            raise ApiErr(404, "not_found", "unknown config version")
                        return 200, {"from": a, "to": b, "changes": diff(state.configs[a], state.configs[b])}
                    if method == "POST" and p == ["config", "rollback"]:
                        req = self.body_json()
                        if not isinstance(req, dict) or not isinstance(req.get("version"), int):
                            raise ApiErr(400, "bad_request", "body must be {\"version\":N,\"author\":\"...\",\"reason\":\"...\"}")
                        if not str(req.get("reason") or "").strip():
                            raise ApiErr(400, "bad_request", "a reason is required")
                        v = req["version"]
                        if v not in state.configs:
                            raise ApiErr(404, "not_found", "unknown config version %d" % v)
                        nv = max(state.configs) + 1
                        state.configs[nv] = copy.deepcopy(state.configs[v])
                        row = {"version": nv, "author": str(req.get("author") or "unknown"), "reason": str(req["reason"]),
                               "created_at": iso(time.time()), "rollback_of": v}
                        state.versions.append(row)
                        state.config_version = nv
                        return 201, row
            raise ApiErr(404, "not_found", "no route for %s /api/v1/%s" % (method, "/".join(p)))

        def sse(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                self.wfile.write(b"retry: 2000\n\n")
                while not stop.is_set():
                    data = json.dumps(state.overview())
                    self.wfile.write(("event: overview\ndata: %s\n\n" % data).encode())
                    self.wfile.flush()
                    if stop.wait(2.0):
                        break
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass

    return H


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--token", required=True, help="the admin token the mock accepts")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--no-sse", action="store_true", help="answer 503 on /dashboard/events")
    ap.add_argument("--max-seconds", type=float, default=3600, help="exit after this long (bounded by default)")
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("the mock only listens on loopback")
    stop = threading.Event()
    srv = ThreadingHTTPServer((a.host, a.port), make_handler(State(), a.token, not a.no_sse, stop))
    srv.daemon_threads = True
    print("listening on http://%s:%d" % (a.host, srv.server_address[1]), flush=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        stop.wait(a.max_seconds)
    except KeyboardInterrupt:
        pass
    stop.set()
    srv.shutdown()


if __name__ == "__main__":
    main()
