"""Welcome-message rendering through a native helper (libc via ctypes), standing in for the
C extension a real service might use for templating.

Like many native helpers, it trusts its input: given no template (a NULL pointer) it reads
address zero and the process dies with SIGSEGV. No Python exception is ever raised, so no
`try/except` in the handler can stop it: exactly the shape of the original outage.
"""

from __future__ import annotations

import ctypes

_libc = ctypes.CDLL(None)
_libc.strlen.argtypes = [ctypes.c_char_p]
_libc.strlen.restype = ctypes.c_size_t


def render_welcome(template: str | None, username: str, incident: str) -> str:
    raw = template.encode() if template is not None else None
    length = _libc.strlen(raw)  # NULL when the org has no template: segfault
    text = raw[:length].decode() if raw is not None else ""
    return text.replace("{user}", username).replace("{incident}", incident)
