"""Message content per spec 1.3: what is accepted, how it is kept, what each refusal says."""

import pytest

from mchat.errors import BadRequest
from messaging.content import TEXT_MAX_CHARS, content_parse


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        ("你好，下午会议改到 3 点。", "text", "你好，下午会议改到 3 点。"),
        ("x" * TEXT_MAX_CHARS, "text", "x" * TEXT_MAX_CHARS),
        ({"type": "text", "text": "hi", "extra": 1}, "text", {"type": "text", "text": "hi"}),
        (
            {"type": "image", "url": "https://img.example.com/a.png", "width": 800, "height": 600},
            "image",
            {"type": "image", "url": "https://img.example.com/a.png", "width": 800, "height": 600},
        ),
        (
            {"type": "file", "url": "http://files.example.com/r.pdf", "name": "报告.pdf", "size": 0},
            "file",
            {"type": "file", "url": "http://files.example.com/r.pdf", "name": "报告.pdf", "size": 0},
        ),
    ],
)
def test_valid_content_is_kept_in_its_spec_form(raw, kind, value):
    parsed = content_parse(raw)
    assert (parsed.type, parsed.value) == (kind, value)


IMAGE = {"type": "image", "url": "https://img.example.com/a.png", "width": 8, "height": 6}
FILE = {"type": "file", "url": "https://f.example.com/a", "name": "a.txt", "size": 3}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "content 不能为空"),
        ("   \n", "content 不能为空"),
        ("x" * (TEXT_MAX_CHARS + 1), "content 不能超过 10000 个字符"),
        (42, "content 必须是字符串或对象"),
        ([1], "content 必须是字符串或对象"),
        ({"text": "no type"}, "content.type 不能为空"),
        ({"type": "video"}, "content.type 必须是 text、image 或 file"),
        ({"type": "text"}, "content.text 不能为空"),
        ({"type": "text", "text": 5}, "content.text 必须是字符串"),
        ({"type": "text", "text": "y" * (TEXT_MAX_CHARS + 1)}, "content.text 不能超过 10000 个字符"),
        ({**IMAGE, "url": None}, "content.url 不能为空"),
        ({**IMAGE, "url": "ftp://x/a.png"}, "content.url 必须是 http 或 https URL"),
        ({**IMAGE, "url": "javascript:alert(1)"}, "content.url 必须是 http 或 https URL"),
        ({**IMAGE, "width": 0}, "content.width 必须是 1 到 100000 之间的整数"),
        ({**IMAGE, "height": "600"}, "content.height 必须是 1 到 100000 之间的整数"),
        ({**IMAGE, "height": True}, "content.height 必须是 1 到 100000 之间的整数"),
        ({k: v for k, v in IMAGE.items() if k != "width"}, "content.width 不能为空"),
        ({**FILE, "name": ""}, "content.name 不能为空"),
        ({**FILE, "name": "../etc/passwd"}, "content.name 必须是不含“/”、不超过 255 个字符的文件名"),
        ({**FILE, "size": -1}, "content.size 必须是 0 到 1099511627776 之间的整数"),
        ({k: v for k, v in FILE.items() if k != "size"}, "content.size 不能为空"),
        ("a\x00b", "content 不能包含 NUL 字符"),
        ({"type": "text", "text": "\x00"}, "content.text 不能包含 NUL 字符"),
        ({**FILE, "name": "a\x00b"}, "content.name 不能包含 NUL 字符"),
        ({**IMAGE, "url": "https://a/\x00b"}, "content.url 不能包含 NUL 字符"),
        ("a\ud800b", "content 包含无效的 Unicode 字符"),
        ({**FILE, "name": "a\ud800b"}, "content.name 包含无效的 Unicode 字符"),
    ],
)
def test_invalid_content_is_400_naming_the_field(raw, message):
    with pytest.raises(BadRequest) as refused:
        content_parse(raw)
    assert str(refused.value.message) == message
