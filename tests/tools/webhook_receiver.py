#!/usr/bin/env python3
"""Webhook receiver for sipxferd tests (python3 stdlib only).

Listens for POSTs, verifies X-Webhook-Signature (base64 HMAC-SHA256 over
"<X-Webhook-Timestamp>.<body>", keyed with the base64-decoded --secret; the
secret's raw bytes when it is not valid base64, as sipxferd does) and appends
each verified event to --out as one compact JSON line, answering 200.

  - a missing or wrong signature: an error line {"error": "bad-signature", ...}
    is appended instead and the answer is 401;
  - with an empty --secret no signature is expected (one that is present is
    ignored);
  - --fail-first N: the first N requests are answered --fail-status (500)
    without being recorded (test retries);
  - --delay S: wait S seconds before answering every request;
  - a body that is not a JSON object: error line {"error": "bad-json"}, 400.

The bound port is printed alone on the first line of stdout (use --port 0
for an ephemeral port), then stdout is left alone; a one-line summary of
each request goes to stderr unless --quiet.
"""
import argparse
import base64
import binascii
import hashlib
import hmac
import json
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


def decode_secret(secret):
    """Key bytes for a secret: base64-decoded (padding optional), else raw."""
    m = re.fullmatch(r"([A-Za-z0-9+/]*)(=*)", secret)
    if not m:
        return secret.encode()
    data, pad = m.group(1), len(m.group(2))
    need = -len(data) % 4
    if len(data) % 4 == 1 or (pad and pad != need):
        return secret.encode()
    try:
        return base64.b64decode(data + "=" * need, validate=True)
    except (binascii.Error, ValueError):
        return secret.encode()


def sign(key, timestamp, body):
    mac = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class State:
    def __init__(self, args):
        self.args = args
        self.key = decode_secret(args.secret)
        self.lock = threading.Lock()
        self.requests = 0
        self.out = open(args.out, "a", encoding="utf-8") if args.out else sys.stdout

    def record(self, obj):
        line = json.dumps(obj, separators=(",", ":"), sort_keys=False)
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as curl expects
    disable_nagle_algorithm = True  # headers and body are separate writes
    server_version = "webhook-receiver/1"

    def log_message(self, fmt, *a):  # replaced by our own one-line log
        pass

    def note(self, status, what):
        st = self.server.state
        if not st.args.quiet:
            sys.stderr.write("%.3f %s %s %d %s\n" % (time.time(), self.command, self.path,
                                                     status, what))
            sys.stderr.flush()

    def answer(self, status, text):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.note(405, "")
        self.answer(405, "POST only")

    def do_POST(self):
        st = self.server.state
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY:
            self.note(413, "bad length")
            self.close_connection = True
            self.answer(413, "bad length")
            return
        body = self.rfile.read(n)

        with st.lock:
            st.requests += 1
            seq = st.requests
        if st.args.delay > 0:
            time.sleep(st.args.delay)
        if seq <= st.args.fail_first:
            self.note(st.args.fail_status, "request %d: failing on purpose" % seq)
            self.answer(st.args.fail_status, "failing on purpose")
            return

        ts = self.headers.get("X-Webhook-Timestamp")
        sig = self.headers.get("X-Webhook-Signature")
        if st.args.secret:
            want = sign(st.key, ts, body) if ts is not None else None
            if not sig or not want or not hmac.compare_digest(sig.strip(), want):
                st.record({"error": "bad-signature", "timestamp": ts, "signature": sig,
                           "body": body.decode("utf-8", "replace")})
                self.note(401, "bad signature")
                self.answer(401, "bad signature")
                return
        try:
            event = json.loads(body)
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except ValueError:
            st.record({"error": "bad-json", "body": body.decode("utf-8", "replace")})
            self.note(400, "bad json")
            self.answer(400, "bad json")
            return
        st.record(event)
        self.note(200, "%s %s" % (event.get("type"), event.get("id")))
        self.answer(200, "ok")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # default 5 drops SYNs under parallel connects


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0, help="port (0: pick one; printed on stdout)")
    ap.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--secret", default="", help="webhooks.secret (base64); empty: no signature")
    ap.add_argument("--out", help="append events here, one JSON per line (default: stdout)")
    ap.add_argument("--fail-first", type=int, default=0, metavar="N",
                    help="answer the first N requests with --fail-status")
    ap.add_argument("--fail-status", type=int, default=500)
    ap.add_argument("--delay", type=float, default=0.0, metavar="SEC",
                    help="wait SEC seconds before every answer")
    ap.add_argument("--quiet", action="store_true", help="no per-request log on stderr")
    args = ap.parse_args()

    server = Server((args.bind, args.port), Handler)
    server.state = State(args)
    print(server.server_address[1], flush=True)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if server.state.out is not sys.stdout:
            server.state.out.close()


if __name__ == "__main__":
    main()
