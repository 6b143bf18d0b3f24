"""The cluster through `gql` (PyPI), a GraphQL client this project did not write, with its default
settings: schema fetching by introspection, queries and mutations over HTTP, subscriptions over
both WebSocket protocols offered in both orders, error codes, and automatic persisted queries
(as Apollo's clients send them) over POST and GET.
"""

import asyncio
import hashlib
import itertools
import json
import threading
import time

import pytest
import requests
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.requests import RequestsHTTPTransport
from gql.transport.websockets import WebsocketsTransport
from graphql import get_introspection_query

APOLLO = "graphql-ws"
TRANSPORT_WS = "graphql-transport-ws"
#: gql 4.4 finds the protocol the server chose by looking up "Sec-WebSocket-Protocol" in a plain
#: dict of the response headers; HTTP header names are case-insensitive, and hyper (under axum)
#: writes them in lowercase, so gql misses it and falls back to the legacy protocol, which it
#: then speaks on a socket negotiated as graphql-transport-ws. That only matters when it offers
#: both and graphql-transport-ws first: alone it assumes the one it offered, and its default
#: offer puts the legacy protocol first, which the server then chooses. The server's side of
#: that handshake (it answers graphql-transport-ws and speaks it) is checked in
#: node/tests/tools.rs with a client that reads headers as HTTP says; strict, so that a gql that
#: fixes its lookup turns this into a failure to notice.
GQL_HEADER_CASE_BUG = pytest.mark.xfail(strict=True, reason="gql 4.4 reads Sec-WebSocket-Protocol case-sensitively")
#: Every order a client may offer the two protocols in, and each alone.
PROTOCOL_OFFERS = [[TRANSPORT_WS], [APOLLO], pytest.param([TRANSPORT_WS, APOLLO], marks=GQL_HEADER_CASE_BUG),
                   [APOLLO, TRANSPORT_WS], None]
INTROSPECTION_OPTIONS = ["descriptions", "specified_by_url", "directive_is_repeatable", "schema_description",
                         "input_value_deprecation"]


def http_client(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return Client(transport=RequestsHTTPTransport(url=url + "/graphql", headers=headers),
                  fetch_schema_from_transport=True)


def req(query, **variables):
    """A gql request with variables (gql 4 takes them on the request, not on execute)."""
    request = gql(query)
    request.variable_values = variables
    return request


def code_of(error):
    return error.errors[0]["extensions"]["code"]


def test_introspection_with_default_settings_on_every_node(cluster):
    # Why: client libraries start by fetching the schema with the standard introspection
    # query; with the limits in the way they cannot start at all.
    for url in cluster.urls:
        client = http_client(url)
        with client as session:
            assert session.client.schema is not None
            assert session.client.schema.get_type("Query").fields["usernameAvailability"]
            # gql validates documents against the fetched schema before sending them.
            result = session.execute(gql('{ usernameAvailability(name: "nobody") { status } }'))
            assert result["usernameAvailability"]["status"] == "AVAILABLE"


def test_every_standard_introspection_document_passes_over_http_and_websocket(cluster):
    # Why: graphql-js's getIntrospectionQuery has options that make the document deeper or
    # wider; every combination must pass the limits, over HTTP and both WebSocket protocols.
    docs = []
    for flags in itertools.product([False, True], repeat=len(INTROSPECTION_OPTIONS)):
        docs.append(get_introspection_query(**dict(zip(INTROSPECTION_OPTIONS, flags))))
    for i, url in enumerate(cluster.urls):
        for doc in docs:
            r = requests.post(url + "/graphql", json={"query": doc}, timeout=15)
            body = r.json()
            assert "errors" not in body, (url, body)
            assert body["data"]["__schema"]["queryType"]["name"] == "Query"
        for offer in [[TRANSPORT_WS], [APOLLO]]:
            async def over_websocket():
                async with Client(transport=WebsocketsTransport(url=cluster.ws(i), subprotocols=offer)) as session:
                    for doc in docs:
                        result = await session.execute(gql(doc))
                        assert result["__schema"]["mutationType"]["name"] == "Mutation"
            asyncio.run(over_websocket())


def test_queries_mutations_and_error_codes_over_http(cluster):
    name = "gqluser"
    client = http_client(cluster.urls[1])
    with client as session:
        reg = session.execute(
            req("mutation($u: String!, $p: String!) { register(input: {username: $u, password: $p}) { token user { username } } }",
                u=name, p="gql password 123"),
        )
        assert reg["register"]["user"]["username"] == name
        with pytest.raises(TransportQueryError) as taken:
            session.execute(gql('mutation { reserveUsername(name: "GQLUSER") { token } }'))
        assert code_of(taken.value) == "USERNAME_TAKEN"
        with pytest.raises(TransportQueryError) as anonymous:
            session.execute(gql("{ viewer { id } }"))
        assert code_of(anonymous.value) == "UNAUTHENTICATED"
    token = reg["register"]["token"]
    with http_client(cluster.urls[2], token) as session:
        assert session.execute(gql("{ viewer { username } }"))["viewer"]["username"] == name


def purchase_soon(cluster, sale, token, delay_s=1.0, times=1):
    """Buys one unit `times` times from another thread after `delay_s`, through node 3."""
    def buy():
        time.sleep(delay_s)
        for n in range(times):
            body = cluster.gql(2, "mutation($s: ID!, $k: String!) { purchase(saleId: $s, quantity: 1, idempotencyKey: $k) { id } }",
                               {"s": sale, "k": f"{sale}-{n}-{time.time()}"}, token=token)
            assert "errors" not in body, body
    t = threading.Thread(target=buy)
    t.start()
    return t


@pytest.mark.parametrize("offer", PROTOCOL_OFFERS, ids=lambda o: "+".join(o) if o else "default")
def test_subscriptions_in_every_protocol_order(cluster, offer):
    # Why: a client that offers both protocols must get frames of the one the handshake named,
    # whichever it offered first, and live events must flow through either.
    sale = cluster.open_sale(stock=10)
    buyer, _ = cluster.register(f"buyer{sale}")
    # None: gql's default offer (the legacy protocol first, then graphql-transport-ws).
    transport = WebsocketsTransport(url=cluster.ws(0), subprotocols=offer)
    updates = []

    async def watch():
        async with Client(transport=transport) as session:
            assert transport.subprotocol == (offer or [APOLLO])[0]
            sub = req("subscription($s: ID!) { saleUpdates(saleId: $s) { index stock sold status } }", s=sale)
            async for event in session.subscribe(sub):
                updates.append(event["saleUpdates"])
                if event["saleUpdates"]["sold"] == 2:
                    break

    t = purchase_soon(cluster, sale, buyer, times=2)
    asyncio.run(asyncio.wait_for(watch(), 30))
    t.join()
    assert updates[0]["stock"] == 10 and updates[0]["status"] == "OPEN", updates
    assert [u["sold"] for u in updates] == [0, 1, 2], updates
    indexes = [u["index"] for u in updates]
    assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes), indexes


@pytest.mark.parametrize("offer", [[TRANSPORT_WS], [APOLLO]], ids=lambda o: o[0])
def test_websocket_errors_carry_the_http_codes_and_auth_comes_from_connection_init(cluster, offer):
    token, me = cluster.register("wsuser" + str(len(offer[0])))
    async def run():
        # Without a token: the same code as over HTTP.
        async with Client(transport=WebsocketsTransport(url=cluster.ws(1), subprotocols=offer)) as session:
            with pytest.raises(TransportQueryError) as e:
                await session.execute(gql("{ viewer { id } }"))
            assert code_of(e.value) == "UNAUTHENTICATED"
            with pytest.raises(TransportQueryError) as e:
                async for _ in session.subscribe(gql('subscription { saleUpdates(saleId: "999999") { index } }')):
                    pass
            assert code_of(e.value) == "NOT_FOUND"
            with pytest.raises(TransportQueryError) as e:
                await session.execute(gql("{ nope }"))
            assert code_of(e.value) == "INVALID_INPUT"
        # With the token in connection_init, as the contract says.
        transport = WebsocketsTransport(url=cluster.ws(1), subprotocols=offer,
                                        init_payload={"Authorization": f"Bearer {token}"})
        async with Client(transport=transport) as session:
            assert (await session.execute(gql("{ viewer { id } }")))["viewer"]["id"] == me

    asyncio.run(asyncio.wait_for(run(), 30))


def apq_body(query, sha, variables=None, with_text=True):
    body = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}}, "variables": variables or {}}
    if with_text:
        body["query"] = query
    return body


def test_automatic_persisted_queries_as_apollo_sends_them(cluster):
    # Why: Apollo Client's persisted-query link sends the hash first, then the text once the
    # server says PERSISTED_QUERY_NOT_FOUND; GETs with the hash are what CDNs cache.
    query = "query Status($n: String!) { usernameAvailability(name: $n, consistency: LOCAL) { status } }"
    sha = hashlib.sha256(query.encode()).hexdigest()
    url = cluster.urls[0] + "/graphql"
    miss = requests.post(url, json=apq_body(query, sha, {"n": "apq1"}, with_text=False), timeout=10).json()
    assert miss["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert miss["errors"][0]["message"] == "PersistedQueryNotFound"
    hit = requests.post(url, json=apq_body(query, sha, {"n": "apq1"}), timeout=10).json()
    assert hit["data"]["usernameAvailability"]["status"] == "AVAILABLE"
    params = {"extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha}}),
              "variables": json.dumps({"n": "apq1"}), "operationName": "Status"}
    got = requests.get(url, params=params, timeout=10)
    assert got.status_code == 200 and got.json()["data"]["usernameAvailability"]["status"] == "AVAILABLE"
    mutation = 'mutation { reserveUsername(name: "apqget") { token } }'
    refused = requests.get(url, params={"query": mutation}, headers={"accept": "application/graphql-response+json"},
                           timeout=10)
    assert refused.status_code == 405 and refused.headers["allow"] == "POST"


def test_cors_for_a_web_app_on_another_origin(cluster):
    # Why: a browser app served elsewhere can call the API only if the node answers its
    # preflight; an origin not on the list must get nothing it could use.
    url = cluster.urls[2] + "/graphql"
    ok = requests.options(url, headers={"origin": "http://app.example", "access-control-request-method": "POST",
                                        "access-control-request-headers": "content-type,authorization"}, timeout=10)
    assert ok.headers.get("access-control-allow-origin") == "http://app.example"
    no = requests.options(url, headers={"origin": "http://other.example", "access-control-request-method": "POST"},
                          timeout=10)
    assert "access-control-allow-origin" not in no.headers


def test_accounts_hashed_by_argon2_cffi_import_and_sign_in(cluster):
    # Why: users come from systems this project did not write. argon2-cffi (PyPI) is what Python
    # services (Django's Argon2PasswordHasher underneath its prefix) hash with; its default
    # parameters and RFC 9106's low-memory ones must import through gql, with its default
    # schema validation, and sign in with the old passwords on another node.
    from argon2 import PasswordHasher
    from argon2.profiles import RFC_9106_LOW_MEMORY

    default_hash = PasswordHasher().hash("pyuser one password")
    rfc_hash = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY).hash("pyuser two password")
    admin = http_client(cluster.urls[0], cluster.admin())
    result = admin.execute(req(
        "mutation($a: [ImportAccountInput!]!) { importAccounts(accounts: $a) { imported skipped { username code reason } } }",
        a=[{"username": "pyuserone", "passwordHash": default_hash, "email": "one@example.com",
            "createdAt": "2017-07-07T07:07:07Z"},
           {"username": "PyUserTwo", "passwordHash": rfc_hash},
           {"username": "pyuserone", "passwordHash": rfc_hash}]))
    assert result["importAccounts"]["imported"] == 2, result
    assert [(s["username"], s["code"]) for s in result["importAccounts"]["skipped"]] == [("pyuserone", "USERNAME_TAKEN")]

    login = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { user { username createdAt } } }"
    other = http_client(cluster.urls[2])
    one = other.execute(req(login, u="pyuserone", p="pyuser one password"))["login"]["user"]
    assert one["username"] == "pyuserone" and one["createdAt"].startswith("2017-07-07T07:07:07")
    two = other.execute(req(login, u="pyusertwo", p="pyuser two password"))["login"]["user"]
    assert two["username"] == "PyUserTwo"

    # A bcrypt hash (what many other systems hold) is refused, naming the field, and imports nothing.
    with pytest.raises(TransportQueryError) as refused:
        admin.execute(req(
            "mutation($a: [ImportAccountInput!]!) { importAccounts(accounts: $a) { imported } }",
            a=[{"username": "pyuserthree", "passwordHash": "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"}]))
    assert code_of(refused.value) == "INVALID_INPUT"
    assert refused.value.errors[0]["message"].startswith("accounts[0].passwordHash")
