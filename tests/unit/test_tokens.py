"""The token store's reloading rule: changes are seen within the interval, a Kubernetes Secret's ``..data``
symlink swap is a change, a missing file grants nothing, a broken edit keeps the last good tokens."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from csync.settings import Settings
from csync.tokens import (
    ReloadingFile,
    ReloadingTokens,
    collector_token_store,
    collector_tokens_path,
    teacher_tokens_path,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def parse(raw: bytes) -> dict[str, str]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("expected an object")
    return value


def write(path: Path, doc: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def test_a_change_is_seen_after_the_interval_not_before(tmp_path: Path) -> None:
    path, clock = tmp_path / "t.json", Clock()
    write(path, {"h1": "d1"})
    tokens = ReloadingTokens(ReloadingFile(path, parse, {}, interval_s=1.0, clock=clock))
    assert tokens.get("h1") == "d1"
    write(path, {"h2": "d1"})
    clock.now = 0.5
    assert tokens.get("h1") == "d1"  # not looked at yet
    clock.now = 1.0
    assert tokens.get("h1") is None and tokens.get("h2") == "d1"


def test_a_kubernetes_secret_update_is_seen(tmp_path: Path) -> None:
    # The kubelet writes a new timestamped folder and swaps the ..data symlink atomically.
    mount, clock = tmp_path / "secret", Clock()
    (mount / "..2026_01").mkdir(parents=True)
    (mount / "..2026_01" / "collector_tokens.json").write_text('{"h1": "d1"}')
    (mount / "..data").symlink_to("..2026_01")
    (mount / "collector_tokens.json").symlink_to("..data/collector_tokens.json")
    source = ReloadingFile(mount / "collector_tokens.json", parse, {}, 1.0, clock)
    assert source.current() == {"h1": "d1"}
    (mount / "..2026_02").mkdir()
    (mount / "..2026_02" / "collector_tokens.json").write_text('{"h1": "d1"}'.replace("h1", "h9"))
    (mount / "..data_tmp").symlink_to("..2026_02")
    os.replace(mount / "..data_tmp", mount / "..data")
    clock.now = 5
    assert source.current() == {"h9": "d1"}


def test_a_missing_file_grants_nothing_and_a_broken_edit_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, clock = tmp_path / "t.json", Clock()
    write(path, {"h1": "d1"})
    source = ReloadingFile(path, parse, {}, 1.0, clock)
    path.write_text("[not an object")
    clock.now = 1
    assert source.current() == {"h1": "d1"}
    assert "keeping the previous tokens" in caplog.text and "h1" not in caplog.text
    path.unlink()
    clock.now = 2
    assert source.current() == {}
    write(path, {"h3": "d2"})
    clock.now = 3
    assert source.current() == {"h3": "d2"}


def test_one_naming_scheme_under_tokens_dir(tmp_path: Path) -> None:
    s = Settings.from_env(env={}, data_dir=str(tmp_path / "data"))
    assert collector_tokens_path(s) == tmp_path / "data" / "collector_tokens.json"
    assert teacher_tokens_path(s) == tmp_path / "data" / "teacher_tokens.json"
    s = s.replace(tokens_dir="/etc/classroomsync/secrets/tokens")
    assert collector_tokens_path(s) == Path(
        "/etc/classroomsync/secrets/tokens/collector_tokens.json"
    )
    assert teacher_tokens_path(s) == Path("/etc/classroomsync/secrets/tokens/teacher_tokens.json")
    s = s.replace(collector_tokens_file=str(tmp_path / "c.json"))
    assert collector_tokens_path(s) == tmp_path / "c.json"


def test_the_collector_store_refuses_to_start_without_a_usable_file(tmp_path: Path) -> None:
    from producers.collector import TokenError, add_token, load_tokens

    s = Settings.from_env(env={}, data_dir=str(tmp_path))
    with pytest.raises(TokenError):
        collector_token_store(s, load_tokens)
    add_token(collector_tokens_path(s), "device-secret", "d-1")
    store = collector_token_store(s, load_tokens)
    assert list(store.values()) == ["d-1"]


def test_the_teacher_token_book_sees_a_kubernetes_secret_update(tmp_path: Path) -> None:
    from privacy.teacher_tokens import TokenBook, hash_token

    def version(n: int, token: str) -> None:
        folder = mount / f"..2026_0{n}"
        folder.mkdir()
        entry = {"teacher_id": "t-1", "district_id": "d-1", "classes": ["c-1"],
                 "token_sha256": hash_token(token)}  # fmt: skip
        (folder / "teacher_tokens.json").write_text(json.dumps({"version": 1, "teachers": [entry]}))
        (mount / "..data_tmp").symlink_to(folder.name)
        os.replace(mount / "..data_tmp", mount / "..data")

    mount = tmp_path / "secret"
    mount.mkdir()
    version(1, "old-teacher-token")
    (mount / "teacher_tokens.json").symlink_to("..data/teacher_tokens.json")
    book = TokenBook(mount / "teacher_tokens.json")
    assert book.authenticate("old-teacher-token") is not None
    version(2, "new-teacher-token")
    assert book.authenticate("old-teacher-token") is None
    assert book.authenticate("new-teacher-token") is not None
