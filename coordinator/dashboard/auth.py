"""Who may see and who may act: users from the environment, hashed passwords, two roles.

``JQC_DASHBOARD_USERS`` holds ``name:role:hash`` entries separated by commas or new lines, where
``role`` is ``viewer`` (read only) or ``operator`` (may act) and ``hash`` comes from
`hash_password` (``coordinator dashboard --hash-password``). Passwords are never stored or
compared in clear: PBKDF2-SHA256 with a random salt, compared in constant time.

With no users configured, only loopback clients are let in, as operators (the ``coordinator
dashboard`` default binds 127.0.0.1); every other client is refused.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from coordinator.errors import ConfigurationError

USERS_ENV = "JQC_DASHBOARD_USERS"
ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 600_000


class Role(str, Enum):
    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str

    @property
    def can_act(self) -> bool:
        return self.role is Role.OPERATOR


#: The user of an unauthenticated loopback request when no users are configured.
LOCAL_OPERATOR = User("local", Role.OPERATOR, "")


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (base64) of ``password``."""
    if not password:
        raise ConfigurationError("password: must not be empty")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches the `hash_password` output ``encoded`` (constant-time compare)."""
    try:
        algorithm, iterations, salt, digest = encoded.split("$")
        if algorithm != ALGORITHM:
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


def parse_users(spec: str) -> dict[str, User]:
    """Users from ``name:role:hash`` entries (comma or newline separated)."""
    users: dict[str, User] = {}
    for entry in (part.strip() for part in spec.replace("\n", ",").split(",")):
        if not entry:
            continue
        name, sep, rest = entry.partition(":")
        role, sep2, encoded = rest.partition(":")
        if not (sep and sep2 and name and encoded):
            raise ConfigurationError(f"{USERS_ENV}: entry {name or entry[:20]!r} is not name:role:hash")
        if role not in (Role.VIEWER.value, Role.OPERATOR.value):
            raise ConfigurationError(f"{USERS_ENV}: role of {name!r} must be viewer or operator, not {role!r}")
        if not encoded.startswith(f"{ALGORITHM}$") or encoded.count("$") != 3:
            raise ConfigurationError(
                f"{USERS_ENV}: password of {name!r} must be a hash from `coordinator dashboard --hash-password`")
        users[name] = User(name, Role(role), encoded)
    return users


def users_from(users: str | Mapping[str, User] | None) -> dict[str, User]:
    """The users given to `create_app`, else those of ``JQC_DASHBOARD_USERS`` (may be empty)."""
    if users is None:
        return parse_users(os.environ.get(USERS_ENV, ""))
    if isinstance(users, str):
        return parse_users(users)
    return dict(users)


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Checks ``Basic`` Authorization headers against the users; a header that verified once is
    remembered (by a keyed digest, never in clear), so each page's requests do not each pay
    for PBKDF2."""

    def __init__(self, users: Mapping[str, User], remember: int = 256) -> None:
        self.users = dict(users)
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, User] = {}
        self._remember = remember

    def __call__(self, authorization: str | None) -> User | None:
        """The user named by the header if the password matches, else None."""
        if not authorization:
            return None
        digest = hmac.new(self._key, authorization.encode(), hashlib.sha256).digest()
        user = self._verified.get(digest)
        if user is None:
            user = authenticate(self.users, authorization)
            if user is not None:
                if len(self._verified) >= self._remember:
                    self._verified.clear()
                self._verified[digest] = user
        return user


def authenticate(users: Mapping[str, User], authorization: str | None) -> User | None:
    """The user named by a ``Basic`` Authorization header whose password matches, else None."""
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        name, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    user = users.get(name)
    if user is None:
        verify_password(password, _dummy_hash())  # same work whether or not the name exists
        return None
    return user if verify_password(password, user.password_hash) else None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(8))
