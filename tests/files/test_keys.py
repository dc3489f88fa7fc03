"""Key rules: the owner's prefix first, a random level, a safe file name last."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from messaging.storage import keys

AT = datetime(2025, 2, 3, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("报告.pdf", "报告.pdf"),
        ("Q1 report (final).xlsx", "Q1_report_(final).xlsx"),
        ("../../etc/passwd", "etc_passwd"),
        ("a\\b/c.txt", "a_b_c.txt"),
        ("..", "file"),
        ("   ", "file"),
        (".hidden", "hidden"),
        ("semi;colon&amp.png", "semi_colon_amp.png"),
        ("x\x00y\n.txt", "x_y_.txt"),
    ],
)
def test_file_names_are_sanitised(name, expected):
    assert keys.file_name_sanitise(name) == expected


def test_long_names_keep_their_extension():
    name = keys.file_name_sanitise("长" * 300 + ".docx")
    assert len(name) == keys.NAME_MAX_CHARS and name.endswith(".docx")


def test_object_keys_start_with_the_owner_and_never_repeat():
    first = keys.object_key(employee_id="emp_uma_001", file_name="报告.pdf", at=AT)
    second = keys.object_key(employee_id="emp_uma_001", file_name="报告.pdf", at=AT)
    assert first != second
    owner, year, month, random, name = first.split("/")
    assert (owner, year, month, name) == ("emp_uma_001", "2025", "02", "报告.pdf")
    assert len(random) == 32 and int(random, 16) >= 0
    assert keys.is_issued_key(first) and keys.owner_of(first) == "emp_uma_001"


@pytest.mark.parametrize(
    "key",
    [
        "emp_uma_001/2025/02/" + "a" * 32 + "/..",
        "emp_uma_001/2025/02/" + "a" * 32 + "/x/y.txt",
        "emp_uma_001/2025/02/short/x.txt",
        "../emp_uma_001/2025/02/" + "a" * 32 + "/x.txt",
        "Emp/2025/02/" + "a" * 32 + "/x.txt",
    ],
)
def test_keys_of_other_shapes_are_not_issued_keys(key):
    assert not keys.is_issued_key(key)


@pytest.mark.parametrize(
    "key, owner",
    [
        ("emp_uma_001/notes/a.txt", "emp_uma_001"),
        ("emp_uma_001/", None),
        ("emp_uma_001/../emp_fei_002/a.txt", None),
        ("emp_uma_001//a.txt", None),
        ("emp_uma_001/a\x00.txt", None),
        ("/emp_uma_001/a.txt", None),
        ("x" * 301, None),
        ("", None),
    ],
)
def test_owner_of(key, owner):
    assert keys.owner_of(key) == owner


def test_content_types(settings):
    settings.MCHAT_FILE_ALLOWED_TYPES = ["image/*", "application/pdf"]
    assert keys.content_type_normalise("Image/PNG; charset=binary") == "image/png"
    assert keys.content_type_normalise("not a type") is None
    assert keys.content_type_normalise("text/plain/x") is None
    assert keys.content_type_allowed("image/png")
    assert keys.content_type_allowed("application/pdf")
    assert not keys.content_type_allowed("application/pdfx")
    assert not keys.content_type_allowed("text/html")
