#!/usr/bin/env python3
"""The attacker of bench/abuse.sh: every attack of docs/SECURITY.md at once, from its own
loopback address (127.0.0.2 by default, so the nodes' per-client limits see it as a client of
its own), for a bounded time against loopback nodes only. Standard library only.

    abuse_attack.py --nodes 127.0.0.1:18201,127.0.0.1:18202 --duration 20 [--source 127.0.0.2]

Prints one JSON object: per attack, how many attempts it made and how they were answered
(HTTP status, or the GraphQL error code, or how the socket ended).
"""

import argparse
import collections
import http.client
import json
import os
import random
import socket
import threading
import time

counts = collections.defaultdict(collections.Counter)
lock = threading.Lock()


def record(attack, outcome):
    with lock:
        counts[attack][outcome] += 1


def connect(addr, source, timeout=10):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout, source_address=(source, 0))
    return s


def post(addr, source, body, path="/graphql", headers=None, token=None):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
    h = {"content-type": "application/json"}
    if token:
        h["authorization"] = f"Bearer {token}"
    h.update(headers or {})
    conn.request("POST", path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def outcome(status, data):
    try:
        v = json.loads(data)
        errors = v.get("errors") if isinstance(v, dict) else None
        if errors:
            return errors[0].get("extensions", {}).get("code", "no-code")
        return "ok"
    except ValueError:
        return f"http-{status}"


def gql(addr, source, query, variables=None, token=None):
    status, data = post(addr, source, json.dumps({"query": query, "variables": variables or {}}), token=token)
    return outcome(status, data), data


def ws_frame(payload: bytes) -> bytes:
    # A masked text frame with a zero mask key, so the payload goes as is.
    n = len(payload)
    head = bytes([0x81])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def ws_open(addr, source):
    s = connect(addr, source)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    s.sendall(
        (
            f"GET /graphql HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ).encode()
    )
    head = s.recv(4096).decode(errors="replace")
    return s, head.split("\r\n", 1)[0]


def forever(stop, attack, fn):
    while not stop.is_set():
        try:
            fn()
        except (OSError, http.client.HTTPException) as e:
            record(attack, type(e).__name__)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", required=True)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--source", default="127.0.0.2")
    args = ap.parse_args()
    nodes = args.nodes.split(",")
    for n in nodes:
        if not n.startswith("127."):
            raise SystemExit("loopback nodes only")
    src = args.source
    pick = lambda: random.choice(nodes)  # noqa: E731

    # Setup: an account to post tweets that searches then walk, and a victim to guess.
    user = f"attacker{random.randrange(1 << 30)}"
    code, data = gql(nodes[0], src, "mutation($u:String!){ register(input:{username:$u,password:\"attacker-password\"}){ token } }", {"u": user})
    token = json.loads(data)["data"]["register"]["token"]
    gql(nodes[0], src, "mutation { register(input:{username:\"victim\",password:\"victim-password-1\"}){ token } }")
    for i in range(300):
        gql(pick(), src, "mutation($b:String!){ postTweet(body:$b){ id } }", {"b": f"alpha tweet {i}" if i % 2 else f"beta tweet {i}"}, token)

    stop = threading.Event()
    big = b"x" * (30 * 1024 * 1024)

    def ws_huge():
        s, status = ws_open(pick(), src)
        s.sendall(ws_frame(b'{"type":"connection_init"}'))
        s.recv(4096)
        try:
            s.sendall(ws_frame(b'{"type":"subscribe","id":"1","payload":{"query":"' + big + b'"}}'))
            s.settimeout(5)
            record("ws_30MiB_message", "closed" if not s.recv(4096) else "answered")
        except OSError:
            record("ws_30MiB_message", "reset")
        s.close()

    def aliased_logins():
        q = "mutation { " + " ".join(f'a{i}: login(username:"victim", password:"guess{i}"){{ token }}' for i in range(500)) + " }"
        record("500_aliased_logins", gql(pick(), src, q)[0])

    def guess():
        record("password_guess", gql(pick(), src, 'mutation { login(username:"victim", password:"%s"){ token } }' % os.urandom(6).hex())[0])

    def searches():
        q = "{ " + " ".join(f's{i}: searchTweets(query:"alpha beta", first:100){{ edges {{ node {{ id }} }} }}' for i in range(20)) + " }"
        record("aliased_searches", gql(pick(), src, q)[0])

    def big_body():
        status, data = post(pick(), src, b'{"query":"{ cluster { nodeId } }","x":"' + b"y" * (300 * 1024) + b'"}')
        record("300KiB_body", outcome(status, data))

    def long_string():
        record("64KiB_argument", gql(pick(), src, "query($n:String!){ usernameAvailability(name:$n){ status } }", {"n": "n" * 65536})[0])

    def unsigned_raft():
        s = connect(pick(), src)
        s.sendall(f"POST /raft/append HTTP/1.1\r\nHost: x\r\ncontent-length: {50 << 20}\r\n\r\n".encode())
        record("unsigned_raft_50MiB", s.recv(64).decode(errors="replace").split("\r\n", 1)[0] or "closed")
        s.close()

    held = []

    def socket_flood():
        s, status = ws_open(pick(), src)
        record("websocket_flood", status)
        if "101" in status and len(held) < 1200:
            held.append(s)  # held open (never initialised): the node closes it at 3 s
        else:
            s.close()

    def slow_upload():
        s = connect(pick(), src, timeout=30)
        s.sendall(b"POST /graphql HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n")
        start = time.time()
        try:
            while time.time() - start < 15 and not stop.is_set():
                s.sendall(b" ")
                time.sleep(1)
            s.settimeout(2)
            record("slow_upload", s.recv(64).decode(errors="replace").split("\r\n", 1)[0] or "closed")
        except OSError:
            record("slow_upload", "cut off")
        s.close()

    attacks = [
        ("ws_30MiB_message", ws_huge, 1),
        ("500_aliased_logins", aliased_logins, 2),
        ("password_guess", guess, 2),
        ("aliased_searches", searches, 4),
        ("300KiB_body", big_body, 1),
        ("64KiB_argument", long_string, 1),
        ("unsigned_raft_50MiB", unsigned_raft, 1),
        ("websocket_flood", socket_flood, 2),
        ("slow_upload", slow_upload, 4),
    ]
    threads = []
    for name, fn, n in attacks:
        for _ in range(n):
            t = threading.Thread(target=forever, args=(stop, name, fn), daemon=True)
            t.start()
            threads.append(t)
    time.sleep(args.duration)
    stop.set()
    for t in threads:
        t.join(timeout=20)
    for s in held:
        s.close()
    print(json.dumps({k: dict(v) for k, v in counts.items()}))


if __name__ == "__main__":
    main()
