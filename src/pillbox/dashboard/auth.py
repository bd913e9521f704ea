"""Who may see the dashboard and act through it.

- A bearer token (`Authorization: Bearer $PILLBOX_DASHBOARD_TOKEN`) for scripts and Prometheus.
- A browser session: the login form checks the same token and sets an HttpOnly cookie. The
  cookie holds no secret: it is `issued.nonce.signature`, signed with a key derived from the
  token, so every web process (they all know the token) accepts it and changing the token ends
  every session.
- CSRF: a cookie session's POSTs must carry that session's CSRF token (form field `_csrf` or
  header `X-CSRF-Token`), derived from the nonce with the same key. Bearer requests need none:
  a browser never adds an Authorization header on its own.
- Dev mode (`pillbox dashboard --dev`, loopback only): no token; the key is random per process
  and sessions are issued on the first page view, so POSTs still need the CSRF token and a
  hostile page cannot act through the operator's browser. Requests naming a non-loopback Host
  are refused (DNS rebinding).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie

COOKIE = "pillbox_session"
SESSION_MAX_AGE_S = 12 * 3600
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


@dataclass(frozen=True)
class Session:
    """An authenticated caller. `kind` is bearer, cookie or dev; `csrf` is what its POSTs must
    carry ("" for bearer callers, who need none); `new_cookie` is set when the response must
    issue the session cookie."""

    kind: str
    csrf: str
    new_cookie: str | None = None


class Auth:
    def __init__(self, token: str | None, *, dev: bool = False) -> None:
        self.token = token or None
        self.dev = dev
        if dev:
            self._key = secrets.token_bytes(32)
        elif self.token:
            self._key = hashlib.sha256(b"pillbox-dashboard\0" + self.token.encode()).digest()
        else:
            self._key = b""

    @property
    def configured(self) -> bool:
        return self.dev or self.token is not None

    # -- checking ------------------------------------------------------------------------
    def authenticate(self, headers: dict[str, str], now: float | None = None) -> Session | None:
        """The caller's session from its headers (lower-case names), or None."""
        if not self.configured:
            return None
        now = time.time() if now is None else now
        bearer = _bearer(headers.get("authorization", ""))
        if bearer is not None:
            if self.check_token(bearer):
                return Session("bearer", "")
            return None
        nonce = self._cookie_nonce(headers.get("cookie", ""), now)
        if nonce is not None:
            return Session("dev" if self.dev else "cookie", self._csrf(nonce))
        if self.dev:
            cookie, nonce = self.issue(now)
            return Session("dev", self._csrf(nonce), new_cookie=cookie)
        return None

    def check_token(self, candidate: str) -> bool:
        if self.token is None:
            return False
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def check_csrf(self, session: Session, candidate: str | None) -> bool:
        if session.kind == "bearer":
            return True
        return bool(candidate) and hmac.compare_digest(str(candidate).encode(),
                                                       session.csrf.encode())

    def host_allowed(self, host_header: str) -> bool:
        """In dev mode only loopback Host names are served (DNS-rebinding defence)."""
        if not self.dev:
            return True
        return is_loopback(_strip_port(host_header))

    # -- sessions ------------------------------------------------------------------------
    def issue(self, now: float | None = None) -> tuple[str, str]:
        """A fresh session cookie value and its nonce."""
        issued = str(int(time.time() if now is None else now))
        nonce = secrets.token_hex(16)
        return f"{issued}.{nonce}.{self._sign('session', issued, nonce)}", nonce

    def _cookie_nonce(self, cookie_header: str, now: float) -> str | None:
        if not cookie_header or not self._key:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header)
        except Exception:
            return None
        morsel = jar.get(COOKIE)
        if morsel is None:
            return None
        parts = morsel.value.split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        issued, nonce, signature = parts
        if not hmac.compare_digest(signature, self._sign("session", issued, nonce)):
            return None
        if not 0 <= now - int(issued) <= SESSION_MAX_AGE_S + 60:
            return None
        return nonce

    def _csrf(self, nonce: str) -> str:
        return self._sign("csrf", nonce)

    def _sign(self, *parts: str) -> str:
        return hmac.new(self._key, "|".join(parts).encode(), hashlib.sha256).hexdigest()[:40]


def cookie_header(value: str, path: str, secure: bool, max_age: int = SESSION_MAX_AGE_S) -> str:
    attrs = [f"{COOKIE}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly",
             "SameSite=Strict"]
    if secure:
        attrs.append("Secure")
    return "; ".join(attrs)


def clear_cookie_header(path: str) -> str:
    return f"{COOKIE}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict"


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bearer(value: str) -> str | None:
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def _strip_port(host: str) -> str:
    host = host.strip()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
