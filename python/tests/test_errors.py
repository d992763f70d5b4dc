"""The exception tree: bad keys, patterns, config; every kind maps."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import freshcache
from freshcache import _native


@pytest.mark.parametrize(
    "key",
    ["", "a::b", ":a", "a:", "bad\x01key", "odds:*", "odds:g?", "x" * 513],
)
def test_bad_keys_raise_invalid_key(cache: freshcache.Cache, key: str) -> None:
    for op in (lambda: cache.put(key, b"v"), lambda: cache.get(key), lambda: cache.get_entry(key), lambda: cache.delete(key)):
        with pytest.raises(freshcache.InvalidKey) as e:
            op()
        assert isinstance(e.value, ValueError) and isinstance(e.value, freshcache.InvalidInput)
        assert isinstance(e.value.key, str) and e.value.reason and e.value.exit_code == 2
        if key.isprintable() and len(key) < 100:
            assert e.value.key == key


def test_bad_patterns(cache: freshcache.Cache) -> None:
    for p in ["", "a::*", "odds:*:"]:
        with pytest.raises(freshcache.InvalidPattern) as e:
            cache.invalidate(p)
        assert isinstance(e.value, ValueError) and e.value.pattern == p
    with pytest.raises(freshcache.InvalidPattern):
        cache.list("a::b")


def test_bad_config_file_names_field(tmp_path: Path) -> None:
    cfg = tmp_path / "runtime.yml"
    cfg.write_text("cache:\n  max_size: lots\n")
    with pytest.raises(freshcache.ConfigError) as e:
        freshcache.Cache(tmp_path / "c", config=cfg)
    assert e.value.field == "cache.max_size" and "runtime.yml" in e.value.source_name
    assert isinstance(e.value, ValueError) and freshcache.Config is freshcache.ConfigError
    with pytest.raises(freshcache.ConfigError):
        freshcache.Cache(tmp_path / "c", config={"classes": {"odds": {"prefix": "odds:", "ttl": "soon"}}})
    with pytest.raises(freshcache.Io):
        freshcache.Cache(tmp_path / "c", config=tmp_path / "missing.yml")


def test_bad_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHCACHE_CACHE_ZSTD_LEVEL", "very")
    with pytest.raises(freshcache.ConfigError) as e:
        freshcache.Cache(tmp_path / "c")
    assert "FRESHCACHE_CACHE_ZSTD_LEVEL" in e.value.source_name


def test_unknown_class_bad_values_and_ttls(cache: freshcache.Cache) -> None:
    with pytest.raises(freshcache.UnknownClass) as e:
        cache.put("odds:g:1", b"v", cls="nope")
    assert e.value.cls == "nope"
    with pytest.raises(TypeError):
        cache.put("odds:g:1", 12)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cache.put("odds:g:1", b"v", ttl="soon")  # type: ignore[arg-type]
    with pytest.raises(freshcache.InvalidInput):
        cache.put("odds:g:1", b"v", ttl=-1)
    # Beyond what a Duration holds: an error of the tree, not a PanicException.
    with pytest.raises(freshcache.InvalidInput):
        cache.put("odds:g:1", b"v", ttl=1e20)
    with pytest.raises(freshcache.InvalidInput):
        cache.evict(max_size="much")


def test_root_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(freshcache.Io) as e:
        freshcache.Cache(f)
    assert isinstance(e.value, OSError)


@pytest.mark.parametrize(
    "kind,cls,base",
    [
        ("io", freshcache.Io, OSError),
        ("corrupt", freshcache.Corrupt, freshcache.Error),
        ("upstream", freshcache.Upstream, freshcache.Error),
        ("quota", freshcache.QuotaExceeded, freshcache.Upstream),
        ("panic", freshcache.Internal, freshcache.Error),
    ],
)
def test_every_kind_maps(kind: str, cls: type, base: type) -> None:
    with pytest.raises(cls) as e:
        _native._raise_for_test(kind)
    assert isinstance(e.value, base) and isinstance(e.value, freshcache.Error)
    # Exceptions survive pickling (multiprocessing sends them back).
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is cls and str(again) == str(e.value)


def test_io_error_carries_errno_and_path() -> None:
    with pytest.raises(freshcache.Io) as e:
        _native._raise_for_test("io")
    assert e.value.os_errno == 28 and e.value.path == "/nonexistent" and "No space" in str(e.value)


def test_loader_exception_propagates_unchanged(cache: freshcache.Cache) -> None:
    class Boom(Exception):
        pass

    def fail() -> bytes:
        raise Boom("upstream down")

    with pytest.raises(Boom, match="upstream down"):
        cache.get_or_fetch("odds:g1:x", fail)
    assert cache.get("odds:g1:x") is None  # nothing stored
    with pytest.raises(TypeError):
        cache.get_or_fetch("odds:g1:x", lambda: 42)
