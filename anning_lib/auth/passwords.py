"""Password hashes (argon2id, RFC 9106) and the password policy.

We use argon2-cffi's :class:`~argon2.PasswordHasher` rather than hand-written hashing: its defaults follow
RFC 9106's recommended low-memory profile (argon2id, t=3, m=64 MiB, p=4), it encodes the parameters in the
hash, and :func:`needs_rehash` lets stored hashes follow when the defaults change.

References
----------
.. [1] A. Biryukov et al., "Argon2 Memory-Hard Function for Password Hashing and Proof-of-Work
   Applications", RFC 9106, 2021.
.. [2] NIST SP 800-63B rev. 3, §5.1.1.2 (memorised secrets: length over composition rules).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from anning_lib.errors import AccessError

MIN_LENGTH = 10
"""Minimum password length (NIST SP 800-63B asks at least 8; the park asks 10)."""
MAX_LENGTH = 128

_HASHER = PasswordHasher()


def check_policy(password: str, username: str = "") -> None:
    """Raise :class:`AccessError` naming the rule a new password breaks (length, equal to the user name)."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise AccessError(f"password: must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise AccessError(f"password: must have at most {MAX_LENGTH} characters")
    if username and password.strip().lower() == username.strip().lower():
        raise AccessError("password: must not be the user name")


def hash_password(password: str, username: str = "") -> str:
    """The argon2id hash (PHC string ``$argon2id$v=19$m=...``) of a password that meets the policy."""
    check_policy(password, username)
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; False for a missing or malformed hash."""
    if not password_hash or not isinstance(password, str):
        return False
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash was made with other parameters than today's defaults."""
    return _HASHER.check_needs_rehash(password_hash)
