"""Readable, unique public ids like the spec's: emp_zhangsan_001, ai_sales_001, dept_sales.

Every id matches EMPLOYEE_ID_PATTERN / DEPARTMENT_ID_PATTERN (lowercase ASCII letters, digits
and "_"), so an employee id is a valid MQTT username, topic level and password_file name.
"""

import re
import unicodedata

from pypinyin import lazy_pinyin

from org.models import Department, Employee

_NON_ID = re.compile(r"[^a-z0-9]+")
MAX_STEM = 40


def _ascii_slug(text: str) -> str:
    """Chinese as pinyin, accents dropped ("Zoë" -> "zoe"), anything else removed."""
    romanised = "".join(lazy_pinyin(text))
    decomposed = unicodedata.normalize("NFKD", romanised).encode("ascii", "ignore").decode()
    return _NON_ID.sub("", decomposed.lower())[:MAX_STEM]


def employee_id_stem(*, name: str, is_ai_agent: bool, slug: str | None = None) -> str:
    """ "emp_" + the name's pinyin for people, "ai_" + a slug (or the name's pinyin) for agents."""
    stem = _ascii_slug(slug or "") or _ascii_slug(name) or ("agent" if is_ai_agent else "user")
    return f"{'ai' if is_ai_agent else 'emp'}_{stem}"


def _next_counter(taken: list[str]) -> int:
    numbers = [int(t.rsplit("_", 1)[1]) for t in taken if t.rsplit("_", 1)[1].isdigit()]
    return max(numbers, default=0) + 1


def next_employee_id(stem: str) -> str:
    """The stem with the next free three-digit counter; callers retry on a unique clash."""
    taken = Employee.objects.filter(employee_id__startswith=f"{stem}_").values_list("employee_id", flat=True)
    return f"{stem}_{_next_counter(list(taken)):03d}"


def next_department_id(*, name: str, slug: str | None = None) -> str:
    """ "dept_" + slug or the name's pinyin; a counter (dept_huadong_002) only when taken."""
    stem = f"dept_{_ascii_slug(slug or '') or _ascii_slug(name) or 'department'}"
    if not Department.objects.filter(department_id=stem).exists():
        return stem
    taken = Department.objects.filter(department_id__startswith=f"{stem}_").values_list(
        "department_id", flat=True
    )
    return f"{stem}_{max(_next_counter(list(taken)), 2):03d}"
