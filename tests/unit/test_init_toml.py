"""init's TOML writer: every string a module can answer comes back from tomllib as written,
and the manifest render() makes reads back through lab.module.load as the entries found."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.init import Found, comment_safe, parse_files, render, toml_key, toml_string, toml_value
from lab.module import Group, Module, User, load

NASTY = [
    "",
    "plain",
    'Deb "One"',
    "back\\slash",
    "\\u0041 is not an escape here",
    '"""',
    "'''",
    "# not a comment",
    "tab\there",
    "line\nbreak\r\nand CR",
    "\x00\x01\x08\x0b\x0c\x1b\x1f\x7f",
    "\b\f",
    "Kazuhiko Yamashita, Room 4F, +81-3-0000-0000",
    "日本語 ✓ 🐧",
    "\u2028\u2029\u0085\ufeff",
    "trailing backslash \\",
    'a = "b"\n[[users]]\nname = "injected"',
]


@pytest.mark.parametrize("text", NASTY, ids=range(len(NASTY)))
def test_every_string_round_trips_through_tomllib(text):
    written = f"v = {toml_string(text)}\n"
    assert tomllib.loads(written) == {"v": text}
    assert "\n" not in written[:-1]  # one line, whatever the text held


def test_the_escapes_are_toml_s_own():
    assert toml_string('a"b\\c') == '"a\\"b\\\\c"'
    assert toml_string("\t\n\r\b\f") == '"\\t\\n\\r\\b\\f"'
    assert toml_string("\x00\x1f\x7f") == '"\\u0000\\u001F\\u007F"'
    assert toml_string("é") == '"é"'  # UTF-8 as it is: TOML files are UTF-8


def test_a_name_that_was_not_utf8_cannot_be_written():
    with pytest.raises(ValueError, match="not valid UTF-8"):
        toml_string("caf\udce9")  # Python's surrogateescape form of b"caf\xe9"


def test_keys_values_and_lists():
    assert toml_key("uid") == "uid" and toml_key("fork-child") == "fork-child"
    assert toml_key("/etc/clab.db") == '"/etc/clab.db"' and toml_key('a "b"') == '"a \\"b\\""'
    assert toml_value(True) == "true" and toml_value(False) == "false" and toml_value(0) == "0"
    assert toml_value(["x", 'y"']) == '["x", "y\\""]' and toml_value(()) == "[]"
    with pytest.raises(TypeError):
        toml_value(1.5)
    value = toml_value(['q"', "n\\n", 7])
    document = f"{toml_key('/a b')} = {value}\n"
    assert tomllib.loads(document) == {"/a b": ['q"', "n\\n", 7]}


def test_comments_hold_no_line_break():
    assert comment_safe("sandbox\n[[users]]\r\x00") == "sandbox?[[users]]??"
    assert comment_safe("tab\tkept") == "tab\tkept"


def written(tmp_path: Path, found: Found, enumerable: bool = True, target: str = "sandbox") -> Path:
    library = tmp_path / "lib" / "libnss_demo.so.2"
    library.parent.mkdir(exist_ok=True)
    library.write_bytes(b"")
    source = tmp_path / "demo.conf"
    source.write_text("x\n")
    module = Module("demo", library, ["passwd", "group", "shadow"], files={"/etc/demo.conf": source})
    out = tmp_path / "module.toml"
    out.write_text(render(module, out, found, enumerable, target))
    return out


def test_the_manifest_reads_back_as_the_entries_found(tmp_path):
    users = [
        User(s.replace("\n", "_")[:32] or "empty", 20000 + i, 20000, s, f"/home/u{i}", "/bin/sh")
        for i, s in enumerate(NASTY)
    ]
    groups = [Group('g"1', 30000, ("a", "b\\c")), Group("none", 30001, ())]
    found = Found(users, groups, shadow=['sh"adow', "x\ny"])
    path = written(tmp_path, found, target="ssh://u@h\n[x]")
    data = tomllib.loads(path.read_text())
    assert data["library"] == "lib/libnss_demo.so.2"  # relative to the manifest
    assert data["files"] == {"/etc/demo.conf": "demo.conf"}
    assert "shadow" not in data  # names in a comment only
    module = load(path)
    assert module.users == users and module.groups == groups
    assert module.library == tmp_path / "lib" / "libnss_demo.so.2"
    assert module.files == {"/etc/demo.conf": tmp_path / "demo.conf"}
    assert '# shadow: the module lists 2 name(s): ["sh\\"adow", "x\\ny"].' in path.read_text()


def test_an_empty_listing_writes_enumerable_false_and_what_to_add(tmp_path):
    path = written(tmp_path, Found(), enumerable=False)
    text = path.read_text()
    data = tomllib.loads(text)
    assert data["enumerable"] is False and "users" not in data and "groups" not in data
    assert "# The module listed no users here (it has no listing)" in text
    assert "# [[users]]" in text and "# [expect]" in text and "# [[services]]" in text
    assert "# [[shadow]]" not in text  # shadow listing not offered: nothing said of it
    assert load(path).users == []


def test_file_options_are_target_equals_source(tmp_path):
    (tmp_path / "db").write_text("")
    assert parse_files([f"/etc/x.db={tmp_path / 'db'}"]) == {"/etc/x.db": tmp_path / "db"}
    for bad in ("/etc/x.db", "etc/x.db=db", f"/etc/x.db={tmp_path / 'missing'}", "/etc/x="):
        with pytest.raises(LabError, match=r"^--file "):
            parse_files([bad])
