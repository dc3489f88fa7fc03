"""No guessing at the console: django-axes locks an account and an address after
MCHAT_LOCKOUT_FAILURES failed sign-ins, says so in Chinese, refuses even the right password
meanwhile, and lets go after the cool-off or when HR unlocks it. Sign-ins are recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.utils import timezone

from org.lockout import signin_lockout_reset

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "Xq7-console-pass"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    # Each sign-in hashes once; the default PBKDF2 makes a hundred of them slow, and the
    # lock-out does not depend on the hasher.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def hr_user(db):
    return get_user_model().objects.create_user("hr", password=PASSWORD, is_staff=True, is_superuser=True)


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user("hr2", password=PASSWORD, is_staff=True, is_superuser=True)


def sign_in(client, username, password, address="10.0.0.1", agent="pytest-browser/1.0"):
    return client.post(
        LOGIN,
        {"username": username, "password": password},
        REMOTE_ADDR=address,
        HTTP_USER_AGENT=agent,
    )


def signed_in(client) -> bool:
    return client.get("/admin/").status_code == 200


def test_console_locks_after_n_wrong_passwords_and_says_so(client, hr_user, settings):
    assert settings.MCHAT_LOCKOUT_FAILURES == 5
    for _ in range(4):
        response = sign_in(client, "hr", "wrong")
        assert response.status_code == 200  # the form again, with its error
        assert "id_password" in response.content.decode()
    response = sign_in(client, "hr", "wrong")
    page = response.content.decode()
    assert response.status_code == 429
    assert "登录已暂时锁定" in page
    assert "连续 5 次登录失败" in page and "15 分钟后再试" in page

    # The right password during the cool-off is refused too, with the same page.
    response = sign_in(client, "hr", PASSWORD)
    assert response.status_code == 429 and "登录已暂时锁定" in response.content.decode()
    assert not signed_in(client)


def test_the_account_stays_locked_from_another_address(client, hr_user):
    for _ in range(5):
        sign_in(client, "hr", "wrong", address="10.0.0.1")
    assert sign_in(client, "hr", PASSWORD, address="10.9.9.9").status_code == 429


def test_an_address_is_locked_for_every_account_after_spraying(client, hr_user, other_user):
    """Policy: failures count per account AND per address; five failures from one address,
    whatever the accounts, lock that address, so another account's right password from it is
    refused, while the same account from elsewhere signs in."""
    for name in ("a", "b", "c", "d", "e"):
        sign_in(client, name, "guess", address="10.0.0.66")
    assert sign_in(client, "hr2", PASSWORD, address="10.0.0.66").status_code == 429
    response = sign_in(client, "hr2", PASSWORD, address="10.0.0.2")
    assert response.status_code == 302
    assert signed_in(client)


def test_a_failure_elsewhere_does_not_lock_another_account(client, hr_user, other_user):
    for _ in range(4):
        sign_in(client, "hr", "wrong", address="10.0.0.1")
    assert sign_in(client, "hr2", PASSWORD, address="10.0.0.2").status_code == 302


def test_hr_unlocks_an_account(client, hr_user):
    for _ in range(5):
        sign_in(client, "hr", "wrong")
    assert sign_in(client, "hr", PASSWORD).status_code == 429

    assert signin_lockout_reset(username="hr") >= 1
    assert sign_in(client, "hr", PASSWORD).status_code == 302
    assert signed_in(client)


def test_hr_unlocks_through_the_axes_console(client, admin_client, hr_user):
    for _ in range(5):
        sign_in(client, "hr", "wrong")
    [attempt] = AccessAttempt.objects.filter(username="hr")
    page = admin_client.get("/admin/axes/accessattempt/")
    assert page.status_code == 200 and "hr" in page.content.decode()
    response = admin_client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert sign_in(client, "hr", PASSWORD).status_code == 302


def test_hr_unlocks_with_the_console_action(client, admin_client, hr_user):
    for _ in range(5):
        sign_in(client, "hr", "wrong", address="10.0.0.8")
    attempts = list(AccessAttempt.objects.values_list("pk", flat=True))
    response = admin_client.post(
        "/admin/axes/accessattempt/", {"action": "unlock", "_selected_action": attempts}, follow=True
    )
    assert "已解除 1 个登录锁定记录的锁定" in response.content.decode()
    assert sign_in(client, "hr", PASSWORD, address="10.0.0.8").status_code == 302


def test_the_lock_ends_with_the_cool_off(client, hr_user, settings):
    for _ in range(5):
        sign_in(client, "hr", "wrong")
    assert sign_in(client, "hr", PASSWORD).status_code == 429
    # As if the cool-off had passed: the failures are older than it.
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )
    assert sign_in(client, "hr", PASSWORD).status_code == 302


def test_sign_ins_and_failures_are_recorded_with_address_and_agent(client, hr_user):
    sign_in(client, "hr", "wrong", address="10.1.2.3", agent="Chromium/1")
    sign_in(client, "hr", PASSWORD, address="10.1.2.4", agent="Chromium/2")
    failure = AccessFailureLog.objects.get(username="hr")
    assert (failure.ip_address, failure.user_agent, failure.locked_out) == ("10.1.2.3", "Chromium/1", False)
    success = AccessLog.objects.get(username="hr")
    assert (success.ip_address, success.user_agent) == ("10.1.2.4", "Chromium/2")
    # The password never reaches the records (Axes masks it in the POST data it keeps).
    attempt = AccessAttempt.objects.get(username="hr")
    assert "wrong" not in attempt.post_data


def test_local_passwords_must_pass_the_validators(hr_user):
    for weak in ("short1", "1234567890123", "password123", "hrhrhrhr"):
        with pytest.raises(ValidationError):
            validate_password(weak, user=hr_user)
    validate_password("correct-horse-battery", user=hr_user)


def test_the_sign_in_sections_of_the_console_are_in_chinese(admin_client):
    page = admin_client.get("/admin/").content.decode()
    for label in (
        "登录锁定",
        "访问尝试",
        "访问失败日志",
        "访问日志",
        "两步验证：验证器",
        "TOTP 验证器",
        "网页会话",
    ):
        assert label in page, label
    assert "Access attempts" not in page and "TOTP devices" not in page
