"""Pure rules of the teacher view: tokens stored as hashes, the access decision, the field whitelist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from privacy.teacher_api import ROW_FIELDS, class_view, decide
from privacy.teacher_tokens import (
    Teacher,
    TokenBook,
    TokenFileError,
    hash_token,
    issue_token,
    parse_tokens,
    revoke_district,
    revoke_teacher,
)

T = Teacher("t1", "d1", frozenset({"c-1"}))


def test_decide_is_401_without_teacher_403_for_other_classes_200_for_own() -> None:
    assert decide(None, "c-1") == 401
    assert decide(T, "c-2") == 403
    assert decide(T, "../c-1") == 403
    assert decide(T, "c-1") == 200


def test_class_view_keeps_only_name_online_sub_app_and_sorts_by_name() -> None:
    members = ["s2", "s1", "s3"]
    hashes: list[list[Any]] = [
        [b"Zoe", b"1", b"fractions"],
        [b"ada", b"0", b""],
        [None, None, None],
    ]
    rows = class_view("c-1", members, hashes, b"k" * 32)
    assert [r["name"] for r in rows] == ["", "ada", "Zoe"]
    assert all(tuple(r) == ROW_FIELDS for r in rows)
    assert rows[2]["online"] is True and rows[2]["sub_app"] == "fractions"
    assert rows[1]["online"] is False and rows[1]["sub_app"] == ""
    assert not any("s1" in str(v) or "s2" in str(v) for r in rows for v in r.values())


def test_row_ids_are_stable_per_class_and_differ_between_classes() -> None:
    one = class_view("c-1", ["s1"], [[b"A", b"0", b""]], b"k" * 32)[0]["row"]
    again = class_view("c-1", ["s1"], [[b"A", b"1", b"x"]], b"k" * 32)[0]["row"]
    other = class_view("c-2", ["s1"], [[b"A", b"0", b""]], b"k" * 32)[0]["row"]
    assert one == again != other


def test_issued_token_is_stored_only_as_its_hash_and_authenticates(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = issue_token(path, "t1", "d1", ["c-2", "c-1", "c-1"])
    text = path.read_text()
    assert token not in text
    assert hash_token(token) in text
    assert path.stat().st_mode & 0o077 == 0
    book = TokenBook(path)
    teacher = book.authenticate(token)
    assert teacher == Teacher("t1", "d1", frozenset({"c-1", "c-2"}))
    assert book.authenticate(token + "x") is None
    assert book.authenticate("") is None
    assert book.authenticate(hash_token(token)) is None  # the stored hash is not a credential


def test_revocation_applies_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    t1 = issue_token(path, "t1", "d1", ["c-1"])
    t2 = issue_token(path, "t2", "d2", ["c-9"])
    book = TokenBook(path)
    assert book.authenticate(t1) is not None
    assert revoke_teacher(path, "t1") == 1
    assert book.authenticate(t1) is None
    assert book.authenticate(t2) is not None
    assert revoke_district(path, "d2") == 1
    assert book.authenticate(t2) is None


def test_malformed_files_are_refused_without_echoing_secrets() -> None:
    bad_hash = {"version": 1, "teachers": [{"teacher_id": "t", "district_id": "d",
                                            "classes": [], "token_sha256": "secret-token"}]}  # fmt: skip
    with pytest.raises(TokenFileError) as info:
        parse_tokens(orjson.dumps(bad_hash))
    assert "secret-token" not in str(info.value)
    with pytest.raises(TokenFileError):
        parse_tokens(b'{"version": 2, "teachers": []}')
    with pytest.raises(TokenFileError):
        issue_token(Path("/nonexistent-dir-never") / "x.json", "t 1", "d1", ["c-1"])
