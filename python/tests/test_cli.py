"""One root shared by the CLI and Python, resolved the same way."""

from __future__ import annotations

import json
from pathlib import Path

import freshcache


def test_cli_put_is_read_from_python(root: Path, cli) -> None:
    r = cli("--root", str(root), "put", "odds:g9:1700000000", "-", input=b'{"home":-105}')
    assert r.returncode == 0, r.stderr
    r = cli("--root", str(root), "put", "teams:2024", "--class", "teams", "--ttl", "90s", "--etag", '"e1"', input=b"[1]")
    assert r.returncode == 0, r.stderr
    c = freshcache.Cache(root)
    assert c.get_json("odds:g9:1700000000") == {"home": -105}
    e = c.get_entry("teams:2024")
    assert e is not None and e.etag == '"e1"' and e.ttl.total_seconds() == 90


def test_python_put_is_read_by_cli(root: Path, cli) -> None:
    c = freshcache.Cache(root)
    c.put_json("player_props:2024:18", [{"p": 1}])
    c.put("news:reuters:x1", b"hello")
    c.flush()
    r = cli("--root", str(root), "get", "news:reuters:x1")
    assert r.returncode == 0 and r.stdout == b"hello"
    r = cli("--root", str(root), "get", "player_props:2024:18")
    assert json.loads(r.stdout) == [{"p": 1}]
    r = cli("--root", str(root), "ls", "--json")
    keys = [e["key"] for e in json.loads(r.stdout)]
    assert keys == ["news:reuters:x1", "player_props:2024:18"]
    r = cli("--root", str(root), "stat", "player_props:2024:18", "--json")
    assert json.loads(r.stdout)["class"] == "player_props"
    # And an invalidation from the CLI is seen by the open Python cache.
    assert cli("--root", str(root), "invalidate", "news:*").returncode == 0
    assert c.get("news:reuters:x1") is None
    assert c.get_json("player_props:2024:18") == [{"p": 1}]


def test_root_and_config_resolution_like_the_cli(tmp_path: Path, cli, monkeypatch) -> None:
    cfg = tmp_path / "runtime.yml"
    cfg_root = tmp_path / "from-config"
    cfg.write_text(f"cache:\n  root: {cfg_root}\nclasses:\n  odds: {{ prefix: 'odds:', ttl: 5s }}\n")
    # config file: its root and its class TTLs
    c = freshcache.Cache(config=cfg)
    assert Path(c.root) == cfg_root and c.config_path == str(cfg)
    c.put("odds:g:1", b"x")
    assert c.get_entry("odds:g:1").ttl.total_seconds() == 5
    # FRESHCACHE_CONFIG + FRESHCACHE_ROOT, as the CLI reads them
    env_root = tmp_path / "from-env"
    monkeypatch.setenv("FRESHCACHE_CONFIG", str(cfg))
    monkeypatch.setenv("FRESHCACHE_ROOT", str(env_root))
    c2 = freshcache.Cache()
    assert Path(c2.root) == env_root
    c2.put("odds:g:2", b"y")
    r = cli("get", "odds:g:2", env={"FRESHCACHE_CONFIG": str(cfg), "FRESHCACHE_ROOT": str(env_root)})
    assert r.returncode == 0 and r.stdout == b"y"
    # an explicit root beats the environment
    c3 = freshcache.Cache(tmp_path / "explicit")
    assert Path(c3.root) == tmp_path / "explicit"
    # FRESHCACHE_CACHE_ROOT overrides the file's root when no root is given
    monkeypatch.delenv("FRESHCACHE_ROOT")
    monkeypatch.setenv("FRESHCACHE_CACHE_ROOT", str(tmp_path / "cache-root-env"))
    assert Path(freshcache.Cache().root) == tmp_path / "cache-root-env"


def test_config_mapping(tmp_path: Path) -> None:
    c = freshcache.Cache(tmp_path / "c", config={"classes": {"odds": {"prefix": "odds:", "ttl": "2m"}}})
    c.put("odds:g:1", b"x")
    assert c.get_entry("odds:g:1").ttl.total_seconds() == 120


def test_cli_guard_and_python_guard_agree(root: Path, cli, clock) -> None:
    c = freshcache.Cache(root)
    c.put("odds:g1:1", b"x", ttl=3600)
    r = cli("--root", str(root), "guard", "odds:g1:1", "llm:features:c1:*", "--json")
    assert r.returncode == 3
    try:
        c.guard(["odds:g1:1", "llm:features:c1:*"])
    except freshcache.StaleSignals as e:
        assert [s.requirement for s in e.signals] == ["llm:features:c1:*"]
        assert e.exit_code == 3
    else:
        raise AssertionError("guard passed")
