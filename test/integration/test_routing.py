"""Routing: virtual hosts, matchers, rewrites, header mutation, direct responses, redirects."""

import pytest

from portway_test_lib import FakeOrigin, HttpConn, make_cluster, make_config

pytestmark = pytest.mark.gateway


def direct(body, status=200, **match):
    return {"match": match or {"prefix": "/"},
            "direct_response": {"status": status, "body": body}}


def fetch(gw, target="/", host="portway.test", method="GET", headers=None, body=None):
    with HttpConn(gw.port) as c:
        return c.roundtrip(method, target, headers=headers, body=body, host=host)


# --------------------------------------------------------------------------- virtual hosts


@pytest.fixture
def vhosts(make_gateway):
    return make_gateway(make_config(virtual_hosts=[
        {"name": "api", "domains": ["api.example.com"], "routes": [direct("api")]},
        {"name": "wild", "domains": ["*.example.com"], "routes": [direct("wild")]},
        {"name": "other", "domains": ["*"], "routes": [direct("default")]},
    ]))


def test_virtual_host_exact_domain(vhosts):
    assert fetch(vhosts, host="api.example.com").body == b"api"


def test_virtual_host_suffix_wildcard(vhosts):
    assert fetch(vhosts, host="shop.example.com").body == b"wild"
    assert fetch(vhosts, host="a.b.example.com").body == b"wild"


def test_virtual_host_catch_all(vhosts):
    assert fetch(vhosts, host="unrelated.org").body == b"default"


def test_virtual_host_ignores_port_in_host(vhosts):
    assert fetch(vhosts, host="api.example.com:8080").body == b"api"
    assert fetch(vhosts, host="shop.example.com:443").body == b"wild"


def test_suffix_wildcard_does_not_match_bare_suffix(make_gateway):
    gw = make_gateway(make_config(virtual_hosts=[
        {"name": "wild", "domains": ["*.example.com"], "routes": [direct("wild")]},
        {"name": "other", "domains": ["*"], "routes": [direct("default")]},
    ]))
    assert fetch(gw, host="example.com").body == b"default"
    assert fetch(gw, host="notexample.com").body == b"default"


def test_unmatched_virtual_host_is_no_route(make_gateway):
    gw = make_gateway(make_config(virtual_hosts=[
        {"name": "api", "domains": ["api.example.com"], "routes": [direct("api")]}]))
    r = fetch(gw, host="other.example.com")
    assert r.status == 404 and r.header("x-portway-error") == "no_route"


# --------------------------------------------------------------------------- matchers


def test_prefix_match(make_gateway):
    gw = make_gateway(make_config(routes=[direct("api", prefix="/api/"), direct("rest")]))
    assert fetch(gw, "/api/users").body == b"api"
    assert fetch(gw, "/api/").body == b"api"
    assert fetch(gw, "/ap").body == b"rest"
    assert fetch(gw, "/other/api/").body == b"rest"


def test_path_match_is_exact(make_gateway):
    gw = make_gateway(make_config(routes=[direct("static", path="/static"), direct("rest")]))
    assert fetch(gw, "/static").body == b"static"
    assert fetch(gw, "/static/x").body == b"rest"
    assert fetch(gw, "/staticx").body == b"rest"


def test_path_match_ignores_query(make_gateway):
    gw = make_gateway(make_config(routes=[direct("static", path="/static"), direct("rest")]))
    assert fetch(gw, "/static?v=1").body == b"static"


def test_regex_match_covers_whole_path(make_gateway):
    gw = make_gateway(make_config(routes=[direct("user", regex="/users/[0-9]+"), direct("rest")]))
    assert fetch(gw, "/users/42").body == b"user"
    assert fetch(gw, "/users/42?tab=1").body == b"user"
    assert fetch(gw, "/users/abc").body == b"rest"
    assert fetch(gw, "/users/42/posts").body == b"rest"
    assert fetch(gw, "/x/users/42").body == b"rest"


def test_first_matching_route_wins(make_gateway):
    gw = make_gateway(make_config(routes=[direct("first", prefix="/a"),
                                          direct("second", prefix="/a/b"), direct("rest")]))
    assert fetch(gw, "/a/b/c").body == b"first"


def test_method_matcher(make_gateway):
    gw = make_gateway(make_config(routes=[
        {"match": {"prefix": "/", "methods": ["POST", "PUT"]},
         "direct_response": {"status": 200, "body": "write"}},
        direct("read")]))
    assert fetch(gw, "/x", method="POST", body=b"1").body == b"write"
    assert fetch(gw, "/x", method="PUT", body=b"1").body == b"write"
    assert fetch(gw, "/x", method="GET").body == b"read"
    assert fetch(gw, "/x", method="DELETE").body == b"read"


def _header_route(matcher, body):
    return {"match": {"prefix": "/", "headers": [matcher]},
            "direct_response": {"status": 200, "body": body}}


def test_header_matcher_exact(make_gateway):
    gw = make_gateway(make_config(routes=[_header_route({"name": "x-env", "exact": "canary"}, "m"),
                                          direct("rest")]))
    assert fetch(gw, headers=[("X-Env", "canary")]).body == b"m"
    assert fetch(gw, headers=[("X-Env", "canary-2")]).body == b"rest"
    assert fetch(gw).body == b"rest"


def test_header_matcher_name_is_case_insensitive(make_gateway):
    gw = make_gateway(make_config(routes=[_header_route({"name": "X-Env", "exact": "canary"}, "m"),
                                          direct("rest")]))
    assert fetch(gw, headers=[("x-env", "canary")]).body == b"m"


def test_header_matcher_regex(make_gateway):
    gw = make_gateway(make_config(routes=[
        _header_route({"name": "x-version", "regex": "v[0-9]+"}, "m"), direct("rest")]))
    assert fetch(gw, headers=[("X-Version", "v12")]).body == b"m"
    assert fetch(gw, headers=[("X-Version", "v12-beta")]).body == b"rest"
    assert fetch(gw, headers=[("X-Version", "x")]).body == b"rest"


def test_header_matcher_presence(make_gateway):
    gw = make_gateway(make_config(routes=[_header_route({"name": "x-debug"}, "m"),
                                          direct("rest")]))
    assert fetch(gw, headers=[("X-Debug", "anything")]).body == b"m"
    assert fetch(gw).body == b"rest"


def test_header_matcher_invert(make_gateway):
    gw = make_gateway(make_config(routes=[
        _header_route({"name": "x-env", "exact": "prod", "invert": True}, "not-prod"),
        direct("prod")]))
    assert fetch(gw, headers=[("X-Env", "staging")]).body == b"not-prod"
    assert fetch(gw, headers=[("X-Env", "prod")]).body == b"prod"


def test_all_header_matchers_must_match(make_gateway):
    gw = make_gateway(make_config(routes=[
        {"match": {"prefix": "/", "headers": [{"name": "x-a", "exact": "1"},
                                              {"name": "x-b", "exact": "2"}]},
         "direct_response": {"status": 200, "body": "both"}},
        direct("rest")]))
    assert fetch(gw, headers=[("X-A", "1"), ("X-B", "2")]).body == b"both"
    assert fetch(gw, headers=[("X-A", "1")]).body == b"rest"


# --------------------------------------------------------------------------- cluster routes


def test_routes_select_clusters(make_gateway, make_origin):
    a, b = make_origin("a"), make_origin("b")
    gw = make_gateway(make_config(
        clusters=[make_cluster("ca", [a.address]), make_cluster("cb", [b.address])],
        routes=[{"match": {"prefix": "/a/"}, "cluster": "ca"},
                {"match": {"prefix": "/b/"}, "cluster": "cb"}]))
    assert fetch(gw, "/a/echo").header("x-origin-name") == "a"
    assert fetch(gw, "/b/echo").header("x-origin-name") == "b"
    assert [r.path for r in a.requests] == ["/a/echo"]
    assert [r.path for r in b.requests] == ["/b/echo"]


def test_prefix_rewrite(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], routes=[
        {"match": {"prefix": "/api/"}, "cluster": "backend", "prefix_rewrite": "/v2/"}]))
    assert fetch(gw, "/api/users/7?full=1").status == 200
    assert origin.requests[0].target == "/v2/users/7?full=1"


def test_host_rewrite(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], routes=[
        {"match": {"prefix": "/"}, "cluster": "backend", "host_rewrite": "example.org"}]))
    fetch(gw, host="public.example.com")
    assert origin.requests[0].header_values("host") == ["example.org"]


def test_request_header_add_set_remove(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], routes=[
        {"match": {"prefix": "/"}, "cluster": "backend",
         "request_headers": {"add": [{"name": "X-Add", "value": "gw"}],
                             "set": [{"name": "X-Set", "value": "new"}],
                             "remove": ["X-Remove"]}}]))
    fetch(gw, headers=[("X-Add", "client"), ("X-Set", "old"), ("X-Set", "older"),
                       ("X-Remove", "gone"), ("X-Keep", "kept")])
    req = origin.requests[0]
    added = [v.strip() for h in req.header_values("x-add") for v in h.split(",")]
    assert sorted(added) == ["client", "gw"]
    assert req.header_values("x-set") == ["new"]
    assert not req.has_header("x-remove")
    assert req.header("x-keep") == "kept"


def test_request_header_set_adds_when_absent(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], routes=[
        {"match": {"prefix": "/"}, "cluster": "backend",
         "request_headers": {"set": [{"name": "X-Set", "value": "new"}]}}]))
    fetch(gw)
    assert origin.requests[0].header_values("x-set") == ["new"]


def test_response_header_add_set_remove(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], routes=[
        {"match": {"prefix": "/"}, "cluster": "backend",
         "response_headers": {"add": [{"name": "X-Resp-Added", "value": "1"}],
                              "set": [{"name": "Server", "value": "portway-test"}],
                              "remove": ["X-Origin-Name"]}}]))
    r = fetch(gw, "/echo")
    assert r.status == 200
    assert r.header_values("x-resp-added") == ["1"]
    assert r.header_values("server") == ["portway-test"]
    assert not r.has_header("x-origin-name")


# --------------------------------------------------------------------------- local actions


def test_direct_response(make_gateway):
    gw = make_gateway(make_config(routes=[
        {"match": {"path": "/static"},
         "direct_response": {"status": 201, "body": "hello", "content_type": "text/x-test"}}]))
    r = fetch(gw, "/static")
    assert r.status == 201 and r.body == b"hello" and r.complete
    assert r.header("content-type") == "text/x-test"
    assert r.header("content-length") == "5" or r.header("transfer-encoding") == "chunked"


def test_direct_response_default_content_type(make_gateway):
    gw = make_gateway(make_config(routes=[direct("plain")]))
    assert fetch(gw).header("content-type", "").startswith("text/plain")


def test_direct_response_to_head_has_no_body(make_gateway):
    gw = make_gateway(make_config(routes=[direct("hello")]))
    with HttpConn(gw.port) as c:
        r = c.roundtrip("HEAD", "/")
        assert r.status == 200 and r.body == b""
        assert c.roundtrip("GET", "/").body == b"hello"


def test_direct_response_keeps_connection_alive(make_gateway):
    gw = make_gateway(make_config(routes=[direct("hello")]))
    with HttpConn(gw.port) as c:
        for _ in range(3):
            assert c.roundtrip("GET", "/").body == b"hello"


def test_redirect(make_gateway):
    gw = make_gateway(make_config(routes=[
        {"match": {"prefix": "/old"},
         "redirect": {"host": "new.example.com", "path": "/new", "status": 301}}]))
    r = fetch(gw, "/old/page", host="site.example.com")
    assert r.status == 301
    assert r.header("location") == "http://new.example.com/new"


@pytest.mark.parametrize("status", [302, 303, 307, 308])
def test_redirect_status(make_gateway, status):
    gw = make_gateway(make_config(routes=[
        {"match": {"prefix": "/"}, "redirect": {"path": "/moved", "status": status}}]))
    assert fetch(gw, "/x", host="site.example.com").status == status


def test_redirect_keeps_request_host_when_unset(make_gateway):
    gw = make_gateway(make_config(routes=[
        {"match": {"prefix": "/"}, "redirect": {"path": "/moved", "status": 302}}]))
    r = fetch(gw, "/x", host="site.example.com")
    assert r.status == 302
    assert r.header("location") == "http://site.example.com/moved"


def test_redirect_keeps_request_path_when_unset(make_gateway):
    gw = make_gateway(make_config(routes=[
        {"match": {"prefix": "/"}, "redirect": {"host": "new.example.com"}}]))
    r = fetch(gw, "/some/page", host="site.example.com")
    assert r.status == 301  # the default
    assert r.header("location") == "http://new.example.com/some/page"


def test_redirect_scheme(make_gateway):
    gw = make_gateway(make_config(routes=[
        {"match": {"prefix": "/"}, "redirect": {"scheme": "https", "status": 308}}]))
    r = fetch(gw, "/p", host="site.example.com")
    assert r.header("location") == "https://site.example.com/p"


# --------------------------------------------------------------------------- dns cluster


def test_dns_cluster_resolves_localhost(make_gateway):
    with FakeOrigin(name="dns", also_ipv6=True) as o:
        gw = make_gateway(make_config([f"localhost:{o.port}"], cluster_options={"type": "dns"}))
        r = fetch(gw, "/echo")
        assert r.status == 200 and r.header("x-origin-name") == "dns"
