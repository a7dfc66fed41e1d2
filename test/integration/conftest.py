"""Fixtures for Portway's integration tests.

Run:  /usr/bin/python3 -m pytest -q test/integration
Env:  PORTWAY_BIN            the binary (default build/bin/portway in the repo)
      PORTWAY_REQUIRE_BIN=1  fail (instead of skip) gateway tests when the binary is missing
      PORTWAY_BIG=1          1 GiB streaming tests instead of 256 MiB
      PORTWAY_TEST_LOG_LEVEL portway --log-level for every gateway (default info)
      PORTWAY_KEEP_TMP=1     keep each gateway's temp dir (config, stdout/stderr logs)
"""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from portway_test_lib import FakeOrigin, Gateway, make_config, portway_bin  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "gateway: needs the portway binary")


def _bin_or_skip():
    path = portway_bin()
    if not os.path.exists(path):
        msg = f"portway binary not found at {path} (set PORTWAY_BIN)"
        if os.environ.get("PORTWAY_REQUIRE_BIN") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def portway_binary():
    return _bin_or_skip()


@pytest.fixture
def origin():
    with FakeOrigin(name="origin") as o:
        yield o


@pytest.fixture
def make_origin():
    """make_origin(name, **kw) -> a started FakeOrigin, stopped at teardown."""
    started = []

    def make(name="origin", **kwargs):
        o = FakeOrigin(name=name, **kwargs).start()
        started.append(o)
        return o

    yield make
    for o in started:
        o.stop()


@pytest.fixture
def make_gateway(portway_binary, request):
    """make_gateway(config, **kw) -> a ready Gateway.

    At teardown every gateway still running gets SIGTERM and must exit 0
    (checked only when the test itself passed; its logs are printed when the
    test failed)."""
    started = []

    def make(config, **kwargs):
        kwargs.setdefault("binary", portway_binary)
        gw = Gateway(config, **kwargs)
        started.append(gw)
        gw.start()
        return gw

    yield make
    # A gateway that failed to start fails the test's setup: no second error at teardown.
    failed = any(getattr(request.node, f"rep_{when}", None) is not None
                 and getattr(request.node, f"rep_{when}").failed for when in ("setup", "call"))
    errors = []
    for gw in started:
        if failed:
            gw.dump_logs()
        try:
            if gw.proc is not None and gw.exit_code is None:
                gw.stop(check=not failed)
        except AssertionError as e:
            errors.append(str(e))
        finally:
            if not failed and not errors:
                gw.cleanup()
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture
def make_h2_origin():
    """make_h2_origin(name, **kw) -> a started h2_test_lib.H2Origin (h2c), stopped at teardown."""
    from h2_test_lib import H2Origin

    started = []

    def make(name="h2origin", **kwargs):
        o = H2Origin(name=name, **kwargs).start()
        started.append(o)
        return o

    yield make
    for o in started:
        o.stop()


@pytest.fixture
def h2_origin(make_h2_origin):
    return make_h2_origin()


@pytest.fixture(scope="session")
def grpc_stubs(tmp_path_factory):
    """Python modules generated from grpc.testing and grpc.health.v1 (see grpc_test_lib)."""
    from grpc_test_lib import generate_stubs

    return generate_stubs(tmp_path_factory.mktemp("grpc-stubs"))


@pytest.fixture
def make_grpc_server(grpc_stubs):
    """make_grpc_server(name, **kw) -> a started grpc_test_lib.GrpcTestServer."""
    from grpc_test_lib import GrpcTestServer

    started = []

    def make(name="grpc-server", **kwargs):
        s = GrpcTestServer(grpc_stubs, name=name, **kwargs).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def proxy(origin, make_gateway):
    """A gateway whose listener "edge" sends every request to `origin`."""
    return make_gateway(make_config([origin.address]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def cp():
    """A started portway-cp (test_control_plane.ControlPlane) serving a
    temporary directory; stopped and removed afterwards."""
    from test_control_plane import ControlPlane

    c = ControlPlane().start()
    yield c
    c.stop()
    shutil.rmtree(c.dir, ignore_errors=True)
