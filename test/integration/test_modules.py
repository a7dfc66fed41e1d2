"""Filter modules through the real gateway: an out-of-tree filter
(examples/custom_filter) built only against an SDK installed from the build
dir, loaded with `modules:`; modules that are refused at start, --validate
and SIGHUP, with the old config serving on.

Env: PORTWAY_BUILD_DIR  the CMake build dir to install the SDK from and to
                        find the test modules in (build/test/modules/); ctest
                        sets it. Default: build/ in the repo.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from portway_test_lib import (REPO_ROOT, Gateway, HttpConn, make_config, portway_bin,
                              run_validate, to_yaml, wait_until)

pytestmark = pytest.mark.gateway

EXAMPLE_DIR = REPO_ROOT / "examples" / "custom_filter"


def build_dir() -> Path:
    return Path(os.environ.get("PORTWAY_BUILD_DIR") or REPO_ROOT / "build")


def built_module(name) -> Path:
    path = build_dir() / "test" / "modules" / f"{name}.so"
    if not path.exists():
        pytest.fail(f"test module {path} not built (build the whole tree first)")
    return path


def _cache_value(cache: Path, key: str):
    for line in cache.read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split("=", 1)[1]
    return None


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    """Installs Portway from the build dir into a temp prefix and builds the
    example module against it, out of tree. Returns (prefix, module dir)."""
    bdir = build_dir()
    if not (bdir / "cmake_install.cmake").exists():
        msg = f"no configured build dir at {bdir} (set PORTWAY_BUILD_DIR)"
        if os.environ.get("PORTWAY_REQUIRE_BIN") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    root = tmp_path_factory.mktemp("sdk")
    prefix = root / "prefix"
    _run(["cmake", "--install", str(bdir), "--prefix", str(prefix)])
    for f in ("bin/portway", "include/portway/filter.h", "include/portway/module.h",
              "include/portway/abi.h", "lib/cmake/Portway/PortwayConfig.cmake"):
        assert (prefix / f).exists(), f"not installed: {f}"
    # The same compiler (and launcher, for speed) as the gateway's build: the
    # ABI stamp names the compiler.
    cache = bdir / "CMakeCache.txt"
    cmd = ["cmake", "-S", str(EXAMPLE_DIR), "-B", str(root / "example"), "-G", "Ninja",
           f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
           # The example is held to the project's own warning policy.
           "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Wno-unused-parameter -Werror"]
    for key in ("CMAKE_CXX_COMPILER", "CMAKE_CXX_COMPILER_LAUNCHER"):
        value = _cache_value(cache, key)
        if value:
            cmd.append(f"-D{key}={value}")
    _run(cmd)
    _run(["ninja", "-C", str(root / "example")])
    assert (root / "example" / "api_key.so").exists()
    return prefix, root / "example"


def api_key_filter(**config):
    base = {"header": "x-api-key", "keys": ["s3cret", "other"], "response_header": "x-api-key-check"}
    base.update(config)
    return {"name": "example.api_key", "config": base}


def with_modules(config, paths, module_dir=None):
    config["modules"] = [{"path": str(p)} for p in paths]
    if module_dir is not None:
        config["module_dir"] = str(module_dir)
    return config


def direct(body):
    return [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}]


def fetch(gw, headers=None):
    with HttpConn(gw.port) as c:
        return c.roundtrip("GET", "/echo", headers=headers or [])


# ------------------------------------------------------------------ out of tree


def test_out_of_tree_module_built_against_the_installed_sdk_filters_requests(sdk, origin):
    prefix, module_dir = sdk
    # module_dir + a relative path; the installed gateway binary.
    config = with_modules(make_config([origin.address], listener={"filters": [api_key_filter()]}),
                          ["api_key.so"], module_dir=module_dir)
    with Gateway(config, binary=str(prefix / "bin" / "portway")) as gw:
        r = fetch(gw)
        assert r.status == 401
        assert r.header("x-portway-error") == "api_key_missing"
        assert not r.has_header("x-api-key-check")

        r = fetch(gw, [("x-api-key", "wrong")])
        assert r.status == 401
        assert r.header("x-portway-error") == "api_key_invalid"

        r = fetch(gw, [("X-Api-Key", "s3cret")])
        assert r.status == 200, r
        assert r.header("x-api-key-check") == "accepted"
        assert not r.has_header("x-portway-error")

        assert len(origin.requests) == 1
        # The key is for the gateway only.
        assert not origin.requests[0].has_header("x-api-key")
        gw.wait_stat("portway_local_replies_total", 2, listener="edge", cause="filter_local_reply")
        assert "example.api_key" not in gw.stderr_text()  # loaded quietly, no error


def test_module_filter_config_errors_have_the_filter_path(sdk, origin):
    _, module_dir = sdk
    config = with_modules(
        make_config([origin.address], listener={"filters": [
            api_key_filter(keys=[]),
            api_key_filter(header=""),
            {"name": "example.api_key", "config": {"header": "x", "keys": ["k"], "nope": 1}},
        ]}), [module_dir / "api_key.so"])
    r = run_validate(config)
    assert r.returncode == 1, r.stderr
    assert "listeners[0].filters[0].config.keys: needs at least one key" in r.stderr, r.stderr
    assert "listeners[0].filters[1].config.header: is required" in r.stderr, r.stderr
    assert "listeners[0].filters[2].config.nope: unknown field" in r.stderr, r.stderr


def test_relative_module_path_resolves_against_the_config_file(sdk, origin, tmp_path):
    _, module_dir = sdk
    (tmp_path / "mods").mkdir()
    shutil.copy(module_dir / "api_key.so", tmp_path / "mods" / "api_key.so")
    config_path = tmp_path / "portway.yaml"
    config_path.write_text(to_yaml(with_modules(
        make_config([origin.address], listener={"filters": [api_key_filter()]}),
        ["mods/api_key.so"])))
    r = subprocess.run([portway_bin(), "--validate", "-c", str(config_path)],
                       capture_output=True, text=True, timeout=30, cwd="/")
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout


# ------------------------------------------------------------------ refusals


def test_wrong_stamp_module_is_a_config_error_at_its_path(origin):
    wrong = built_module("wrong_stamp")
    config = with_modules(make_config([origin.address]), [wrong])
    r = run_validate(config)
    assert r.returncode == 1
    line = next((l for l in r.stderr.splitlines() if l.startswith("modules[0].path: ")), None)
    assert line is not None, r.stderr
    assert f"cannot load module '{wrong}'" in line
    assert "ABI stamp mismatch" in line
    # Both stamps are shown.
    assert "'portway 0.0.1; sdk 0000000000000000;" in line
    assert "this gateway is 'portway " in line

    # And the gateway does not start on it.
    gw = Gateway(config)
    try:
        with pytest.raises(Exception, match="exited with 1 during start"):
            gw.start()
        assert "modules[0].path: cannot load module" in gw.stderr_text()
    finally:
        gw.kill()
        gw.cleanup()


def test_every_kind_of_bad_module_is_reported_not_crashed_on(origin, tmp_path):
    not_elf = tmp_path / "not_elf.so"
    not_elf.write_text("hello\n")
    paths = [tmp_path / "missing.so", not_elf, built_module("no_entry"),
             built_module("throws_on_register"), built_module("aborts_on_load")]
    r = run_validate(with_modules(make_config([origin.address]), paths))
    assert r.returncode == 1, r.stderr
    err = r.stderr
    assert f"modules[0].path: cannot load module '{paths[0]}': no such file" in err, err
    assert f"modules[1].path: cannot load module '{paths[1]}': not a loadable shared object" in err
    assert f"modules[2].path: cannot load module '{paths[2]}': not a Portway module" in err
    assert (f"modules[3].path: cannot load module '{paths[3]}': its registration failed: "
            "test module throws on purpose") in err
    assert f"modules[4].path: cannot load module '{paths[4]}': loading it would end" in err
    assert "5 error(s)" in err


def test_two_modules_defining_the_same_proto_file_refuses_the_second(sdk, origin, tmp_path):
    _, module_dir = sdk
    copy = tmp_path / "api_key_copy.so"
    shutil.copy(module_dir / "api_key.so", copy)
    r = run_validate(with_modules(make_config([origin.address]),
                                  [module_dir / "api_key.so", copy]))
    assert r.returncode == 1, r.stderr  # an error, not an abort
    assert (f"modules[1].path: cannot load module '{copy}': it defines the protobuf file "
            "'example/api_key.proto'") in r.stderr, r.stderr


# ------------------------------------------------------------------ SIGHUP


def test_sighup_loads_a_newly_named_module(sdk, origin, make_gateway):
    _, module_dir = sdk
    gw = make_gateway(make_config([origin.address]))
    assert fetch(gw).status == 200
    gw.reload(with_modules(make_config([origin.address], listener={"filters": [api_key_filter()]}),
                           [module_dir / "api_key.so"]))
    wait_until(lambda: fetch(gw).status == 401, 5.0, message="the module's filter after SIGHUP")
    r = fetch(gw, [("x-api-key", "other")])
    assert r.status == 200 and r.header("x-api-key-check") == "accepted"
    # Reloading with the module still named loads nothing again.
    gw.reload(with_modules(make_config([origin.address], listener={"filters": [
        api_key_filter(response_header="x-second")]}), [module_dir / "api_key.so"]))
    wait_until(lambda: fetch(gw, [("x-api-key", "other")]).header("x-second") == "accepted", 5.0,
               message="second reload applied")
    assert "cannot load module" not in gw.log_text()


def test_sighup_with_a_bad_module_keeps_the_old_config_serving(sdk, origin, make_gateway):
    _, module_dir = sdk
    good = with_modules(make_config([origin.address], listener={"filters": [api_key_filter()]}),
                        [module_dir / "api_key.so"])
    gw = make_gateway(good)
    assert fetch(gw).status == 401

    wrong = built_module("wrong_stamp")
    bad = with_modules(make_config(routes=direct("v2")), [module_dir / "api_key.so", wrong])
    gw.reload(bad)
    wait_until(lambda: "reload rejected" in gw.log_text(), 5.0, message="the rejected reload")
    wait_until(lambda: "modules[1].path" in gw.log_text(), 5.0, message="the module error")
    assert "ABI stamp mismatch" in gw.log_text()
    # The old config (with its module filter) keeps serving.
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        assert fetch(gw).status == 401
        r = fetch(gw, [("x-api-key", "s3cret")])
        assert r.status == 200 and r.header("x-api-key-check") == "accepted"
        time.sleep(0.1)
    assert gw.alive()
    assert gw.admin_get("/ready")[0] == 200
