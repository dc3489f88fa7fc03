"""Readable, unique employee ids like the spec's: emp_zhangsan_001, ai_sales_001."""

import re

from pypinyin import lazy_pinyin

from org.models import Employee

_NON_ID = re.compile(r"[^a-z0-9]+")
MAX_STEM = 40


def employee_id_stem(*, name: str, is_ai_agent: bool, slug: str | None = None) -> str:
    """"emp_" + the name's pinyin for people, "ai_" + a slug (or the name's pinyin) for agents."""
    source = slug or "".join(lazy_pinyin(name))
    stem = _NON_ID.sub("", source.lower())[:MAX_STEM] or "user"
    return f"{'ai' if is_ai_agent else 'emp'}_{stem}"


def next_employee_id(stem: str) -> str:
    """The stem with the next free three-digit counter; callers retry on a unique clash."""
    taken = Employee.objects.filter(employee_id__startswith=f"{stem}_").values_list(
        "employee_id", flat=True
    )
    numbers = [int(t.rsplit("_", 1)[1]) for t in taken if t.rsplit("_", 1)[1].isdigit()]
    return f"{stem}_{max(numbers, default=0) + 1:03d}"
