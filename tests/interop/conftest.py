"""A three-node cluster of the real `node` binary on loopback ports, for tests that drive it with
tools this project did not write (GraphQL client libraries, a codegen tool, a browser).

The binary is $NODE_BIN (default: target/debug/node). Each node gets its own temp data dir; all
are killed when the session ends. Nothing here is mocked.
"""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NODE_BIN = os.environ.get("NODE_BIN", os.path.join(ROOT, "target", "debug", "node"))
READY_TIMEOUT_S = 60
#: The browser origin the cluster allows (CORS), as a web app elsewhere would be.
APP_ORIGIN = "http://app.example"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, query, variables=None, token=None):
    """One GraphQL POST with the standard library: (status, body)."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(url + "/graphql", data=body, headers={"content-type": "application/json"})
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=15) as resp:
        return resp.status, json.loads(resp.read())


class Cluster:
    def __init__(self, urls, dirs):
        self.urls = urls
        self.dirs = dirs
        self._admin = None

    def ws(self, i):
        return self.urls[i].replace("http://", "ws://") + "/graphql"

    def gql(self, i, query, variables=None, token=None):
        status, body = post(self.urls[i], query, variables, token)
        assert status == 200, body
        return body

    def register(self, name, node=0):
        body = self.gql(
            node,
            "mutation($u: String!, $p: String!) { register(input: {username: $u, password: $p}) { token user { id } } }",
            {"u": name, "p": name + " password 123"},
        )
        assert "errors" not in body, body
        return body["data"]["register"]["token"], body["data"]["register"]["user"]["id"]

    def admin(self):
        """The first account registered is the cluster's ADMIN."""
        if self._admin is None:
            self._admin = self.register("interopboss")[0]
        return self._admin

    def open_sale(self, stock=10):
        admin = self.admin()
        body = self.gql(0, 'mutation { createProduct(input: {name: "Sneaker", priceCents: 100}) { id } }', token=admin)
        product = body["data"]["createProduct"]["id"]
        body = self.gql(
            0,
            "mutation($p: ID!, $s: Int!) { createSale(input: {productId: $p, stock: $s, perUserLimit: 5}) { id } }",
            {"p": product, "s": stock},
            token=admin,
        )
        sale = body["data"]["createSale"]["id"]
        body = self.gql(0, "mutation($s: ID!) { startSale(saleId: $s) { status } }", {"s": sale}, token=admin)
        assert body["data"]["startSale"]["status"] == "OPEN", body
        return sale


@pytest.fixture(scope="session")
def cluster():
    if not os.access(NODE_BIN, os.X_OK):
        pytest.fail(f"no node binary at {NODE_BIN}: run `cargo build -p node` or set NODE_BIN")
    tmp = tempfile.mkdtemp(prefix="raftgraph-interop-")
    ports = [free_port() for _ in range(3)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(ports))
    procs, dirs = [], []
    for i, port in enumerate(ports):
        data = os.path.join(tmp, f"node{i + 1}")
        dirs.append(data)
        log = open(os.path.join(tmp, f"node{i + 1}.log"), "w")
        procs.append(
            subprocess.Popen(
                [NODE_BIN, "--id", str(i + 1), "--listen", f"127.0.0.1:{port}", "--peers", peers,
                 "--data-dir", data, "--cluster-secret", "interop-cluster-secret-0123456789",
                 "--jwt-secret", "interop-jwt-secret-0123456789", "--cors-origins", APP_ORIGIN],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"},
            )
        )
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    deadline = time.time() + READY_TIMEOUT_S
    for url in urls:
        while True:
            try:
                with urllib.request.urlopen(url + "/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                for p in procs:
                    p.kill()
                pytest.fail(f"cluster not ready within {READY_TIMEOUT_S} s; logs in {tmp}")
            time.sleep(0.2)
    c = Cluster(urls, dirs)
    c.admin()  # first, so that the admin is this account whatever test runs first
    yield c
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
