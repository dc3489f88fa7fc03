"""Credential hashing: the `$7$` form Mosquitto's password file takes (DESIGN §2).

Stored on the employee (`mqtt_password_hash`) and rendered into the broker's password file
by whoever implements the broker-policy port. No Django here: the broker tooling uses it too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$ hashes


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto's `$7$` hash: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key."""
    salt = secrets.token_bytes(12)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Check a password against a `$7$` hash (as written by `hash_password` or mosquitto_passwd)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    if iterations < 1:
        return False
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(key, expected)
