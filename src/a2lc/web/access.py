"""Who may use the annotation app: the workspace's token, app-minted sessions, allowed hosts.

The token's SHA-256 is in the database and the token itself in a file only its owner
reads; sessions are ``nonce.mac`` under a key derived from the token, so the app
recognises the ones it minted without storing them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from a2lc._atomic import atomic_write_text
from a2lc.workspace import Workspace

TOKEN_META = "annotate_token"
"""Workspace meta key of the app's secret token (created on first use)."""
SESSIONS_META = "annotate_sessions"
"""Workspace meta key where a2lc before schema 7 kept annotator name → session hash
(now the ``annotator_sessions`` table)."""
TOKEN_HEADER = "x-a2lc-token"
SESSION_HEADER = "x-a2lc-session"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


TOKEN_FILE = "annotate-token"
"""The token itself, in a file only its owner may read (the database keeps a hash)."""
TOKEN_HASH_META = "annotate_token_sha256"
TOKEN_COOKIE = "a2lc_token"


def _mac(nonce: str, key: bytes) -> str:
    return hmac.new(key, nonce.encode(), hashlib.sha256).hexdigest()[:32]


def _minted(session: str, key: bytes) -> bool:
    """Whether ``session`` is ``nonce.mac`` as :func:`create_app`'s ``/api/session`` mints."""
    nonce, _, mac = session.partition(".")
    if not nonce or len(session) > 128:
        return False
    return hmac.compare_digest(mac.encode(), _mac(nonce, key).encode())


def _normal_code(code: str) -> str:
    """A resume code as typed (any case, with or without the dash or spaces), compared."""
    return "".join(code.split()).replace("-", "").upper()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def workspace_token(ws: Workspace, *, new: bool = False) -> str:
    """The workspace's annotation token, created on first use or when ``new`` (rotation).

    The database keeps only its SHA-256, so whoever reads the workspace's database
    (or a copy of it) does not get the token; the token itself is in
    :data:`TOKEN_FILE`, readable by its owner alone (0600), so a restart prints the
    same URL. A token stored in the database by an older a2lc moves there. A new
    token frees every annotator name (the browsers holding them sign in again).
    """
    path = ws.path / TOKEN_FILE
    old = ws.meta(TOKEN_META)
    token = None if new else (old or _read_token(path))
    if token is not None and ws.meta(TOKEN_HASH_META) not in (None, _token_hash(token)):
        token = None  # the file and the database disagree: start again
    if token is None:
        token = secrets.token_urlsafe(24)
    if not path.is_file() or _read_token(path) != token:
        atomic_write_text(path, token + "\n", mode=0o600)
    before = ws.meta(TOKEN_HASH_META)
    if before not in (None, _token_hash(token)):
        # A new token: the sessions minted under the old one are void, so the names
        # they held are free again (else nobody could ever show their resume codes).
        with ws.transaction() as db:
            db.execute("DELETE FROM annotator_sessions")
    if before != _token_hash(token) or old:
        ws.set_meta({TOKEN_HASH_META: _token_hash(token), TOKEN_META: ""})
    return token


def _read_token(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


WILDCARD = ("0.0.0.0", "::", "")


def allowed_hosts(host: str, port: int, extra: tuple[str, ...] = ()) -> set[str]:
    """``Host`` header values that name this app: the bind address (loopback aliases too)
    and ``extra`` names (what people type when the app listens on every address)."""
    names = {*extra} | ({host, *LOOPBACK} if host in LOOPBACK else set())
    if host not in WILDCARD:
        names.add(host)
    values = {f"{name}:{port}" for name in names}
    return values | names if port == 80 else values
