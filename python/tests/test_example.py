"""python/examples/cached_client.py runs and shows one API call for 50 requests."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_cached_client_example_runs() -> None:
    r = subprocess.run([sys.executable, str(REPO / "python" / "examples" / "cached_client.py")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "50 concurrent get_player_props_by_week(2024, 18): 1 API call(s)" in r.stdout
    assert "invalidate_week_data(2024, 18) removed 3 entries" in r.stdout


def test_stubs_and_marker_ship_with_the_package() -> None:
    import importlib.resources as res

    import freshcache

    files = {p.name for p in res.files(freshcache).iterdir()}
    assert {"py.typed", "_native.pyi", "__init__.py", "_errors.py"} <= files
    assert freshcache.Cache.__doc__ and freshcache.Cache.get.__doc__ and freshcache.Cache.guard.__doc__
