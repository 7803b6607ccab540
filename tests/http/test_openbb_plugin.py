"""The OpenBB Platform plug-in: openbb-core finds the ``websockets`` router through the
``openbb_core_extension`` entry point; ``obb.websockets`` (built by openbb-core's package
builder, as ``openbb`` does) and OpenBB's own REST API reach obbws-jupyter's connections and
answer OpenBB's ``OBBject``.

Runs in a subprocess with its own HOME: openbb-core writes its settings under the home
directory and caches the extensions it loaded, per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    out = {}
    build = Path(sys.argv[1]) / "obb_build"
    (build / "obbws_obb").mkdir(parents=True)
    (build / "obbws_obb" / "__init__.py").write_text("")
    from openbb_core.app.static.package_builder import PackageBuilder

    # what `openbb` does on import: build the static package from installed extensions
    PackageBuilder(build / "obbws_obb", lint=False).build()
    sys.path.insert(0, str(build))
    from obbws_obb.package.__extensions__ import Extensions
    from openbb_core.app.static.app_factory import create_app

    obb = create_app(Extensions)
    out["routers"] = repr(obb)
    created = obb.websockets.create_connection(
        provider="demo", name="obb", symbol="btcusd,ethusd", rate=300, limit=None
    )
    out["created_type"] = type(created).__name__
    out["created_running"] = created.results.is_running
    out["created_provider"] = created.provider
    out["created_limit"] = created.results.limit

    from obbws_jupyter import _api as api
    from tests.conftest import RecordWaiter
    assert RecordWaiter(api.get_client("obb")).wait(10, timeout=10.0)

    results = obb.websockets.get_results("obb")
    frame = results.to_df()
    out["results_count"] = len(results.results)
    out["df_columns"] = sorted(map(str, frame.columns))
    out["df_index"] = str(frame.index.name)
    out["killed"] = obb.websockets.kill("obb").results
    try:
        obb.websockets.kill("obb")
    except Exception as exc:
        out["kill_again"] = [type(exc).__name__, str(exc)]

    from fastapi.testclient import TestClient
    from openbb_core.api.rest_api import app

    http = TestClient(app)
    base = "/api/v1/websockets"
    response = http.get(base + "/create_connection", params={
        "provider": "demo", "name": "rest", "symbol": "btcusd", "rate": "300",
        "limit": "None", "auth_token": "tok-1",
    })
    out["rest_create"] = [response.status_code, response.json()["results"]["limit"]]
    assert RecordWaiter(api.get_client("rest", "tok-1")).wait(5, timeout=10.0)
    response = http.get(base + "/get_results", params={"name": "rest", "auth_token": "tok-1"})
    out["rest_results"] = [response.status_code, len(response.json()["results"])]
    response = http.get(base + "/get_results", params={"name": "rest"})
    out["rest_no_token"] = response.status_code
    try:
        obb.websockets.get_client_status(name="rest")
    except Exception as exc:
        out["python_no_token"] = type(exc).__name__
    response = http.get(base + "/kill", params={"name": "rest", "auth_token": "tok-1"})
    out["rest_kill"] = [response.status_code, response.json()["results"]]
    print("RESULT " + json.dumps(out))
    """
)


def test_obb_websockets_and_openbb_api_reach_our_connections(tmp_path: Path) -> None:
    """obb.websockets.create_connection/get_results/kill and OpenBB's REST routes return
    OBBjects on obbws-jupyter connections; errors become OpenBB's."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(root), TMPDIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, done.stdout[-2000:] + done.stderr[-4000:]
    out = json.loads(line[len("RESULT ") :])
    assert "/websockets" in out["routers"]
    assert out["created_type"] == "OBBject" and out["created_running"] is True
    assert out["created_provider"] == "demo"
    assert out["created_limit"] is None  # limit=None keeps every row, as in Python
    assert out["results_count"] >= 10
    assert {"id", "received_at", "symbol", "price", "size"} <= set(out["df_columns"])
    assert out["df_index"] == "date"
    assert out["killed"] == "Client obb killed."
    assert (
        out["kill_again"][0] == "OpenBBError" and "No connections to kill" in out["kill_again"][1]
    )
    assert out["rest_create"] == [200, None]
    assert out["rest_results"][0] == 200 and out["rest_results"][1] >= 5
    assert out["rest_no_token"] == 502  # OpenBB's API answers UnauthorizedError with 502
    assert out["python_no_token"] == "UnauthorizedError"
    assert out["rest_kill"] == [200, "Client rest killed."]
