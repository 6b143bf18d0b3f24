"""The cluster through `ariadne-codegen` (PyPI): a codegen tool that introspects a running node (or
reads its /schema.graphql), generates a typed async client, and that generated client, with its
default settings, runs queries and mutations over HTTP and a subscription over
graphql-transport-ws, and reports error codes.
"""

import asyncio
import importlib
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

QUERIES = """
query Availability($name: String!) {
  usernameAvailability(name: $name, consistency: LOCAL) { name canonical status suggestions }
}
mutation Reserve($name: String!) { reserveUsername(name: $name, ttlSeconds: 60) { token expiresAt } }
mutation Register($u: String!, $p: String!) {
  register(input: {username: $u, password: $p}) { token user { id username } }
}
mutation Buy($sale: ID!, $key: String!) { purchase(saleId: $sale, quantity: 1, idempotencyKey: $key) { id quantity } }
subscription SaleUpdates($sale: ID!) { saleUpdates(saleId: $sale) { index stock sold status } }
"""


def generate(tmp_path, package, schema_setting):
    """Runs the ariadne-codegen command as a user would, with a pyproject.toml of its own."""
    work = tmp_path / package
    work.mkdir()
    (work / "queries.graphql").write_text(QUERIES)
    (work / "pyproject.toml").write_text(
        "[tool.ariadne-codegen]\n"
        f"{schema_setting}\n"
        'queries_path = "queries.graphql"\n'
        f'target_package_name = "{package}"\n'
        f'target_package_path = "{work}"\n'
    )
    codegen = os.path.join(os.path.dirname(sys.executable), "ariadne-codegen")
    run = subprocess.run([codegen], cwd=work, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(work))
    return importlib.import_module(package)


@pytest.fixture(scope="module")
def introspected(cluster, tmp_path_factory):
    # Why: codegen tools start from introspection of a running server; the standard
    # introspection query must pass its limits.
    return generate(tmp_path_factory.mktemp("codegen"), "raftgraph_introspected",
                    f'remote_schema_url = "{cluster.urls[0]}/graphql"')


def test_codegen_from_the_sdl_gives_the_same_client(cluster, tmp_path, introspected):
    # Why: /schema.graphql is the other way codegen tools take a schema; both must agree.
    sdl = tmp_path / "schema.graphql"
    with urllib.request.urlopen(cluster.urls[1] + "/schema.graphql", timeout=10) as r:
        sdl.write_bytes(r.read())
    from_sdl = generate(tmp_path, "raftgraph_from_sdl", f'schema_path = "{sdl}"')
    a = os.path.dirname(introspected.__file__)
    b = os.path.dirname(from_sdl.__file__)
    for name in ["availability.py", "reserve.py", "register.py", "sale_updates.py"]:
        assert open(os.path.join(a, name)).read() == open(os.path.join(b, name)).read(), name


def test_the_generated_client_queries_mutates_and_subscribes(cluster, introspected):
    sale = cluster.open_sale(stock=3)
    client_of = lambda i: introspected.Client(url=cluster.urls[i] + "/graphql", ws_url=cluster.ws(i))

    async def run():
        c = client_of(1)
        reserved = await c.reserve(name="codegen")
        assert reserved.reserve_username.token
        seen = await client_of(2).availability(name="CODEGEN")
        assert seen.username_availability.canonical == "codegen"
        # The reservation came through another node: the second node may lag, so poll
        # briefly rather than assume (LOCAL), and then it must say RESERVED.
        for _ in range(50):
            seen = await client_of(2).availability(name="CODEGEN")
            if seen.username_availability.status.value == "RESERVED":
                break
            await asyncio.sleep(0.1)
        assert seen.username_availability.status.value == "RESERVED"
        assert seen.username_availability.suggestions

        with pytest.raises(introspected.GraphQLClientGraphQLMultiError) as e:
            await c.reserve(name="codegen")
        assert e.value.errors[0].extensions["code"] == "USERNAME_RESERVED"

        reg = await c.register(u="codegenbuyer", p="codegen password 1")
        buyer = introspected.Client(url=cluster.urls[0] + "/graphql", ws_url=cluster.ws(0),
                                    headers={"Authorization": f"Bearer {reg.register.token}"})

        def buy_later():
            time.sleep(1.0)
            asyncio.run(buyer.buy(sale=sale, key="codegen-1"))

        t = threading.Thread(target=buy_later)
        t.start()
        updates = []
        async for event in client_of(2).sale_updates(sale=sale):
            updates.append(event.sale_updates)
            if event.sale_updates.sold == 1:
                break
        t.join()
        assert [u.sold for u in updates] == [0, 1]
        assert updates[0].stock == 3 and updates[-1].stock == 2

    asyncio.run(asyncio.wait_for(run(), 60))
