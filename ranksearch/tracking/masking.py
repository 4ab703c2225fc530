"""Credentials never reach MLflow: every param, tag and artifact text passes through here first."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

_SECRET_WORDS = ("token", "secret", "passw", "pwd", "credential", "apikey", "api_key", "auth", "private")
_KEY_WORD = re.compile(r"(^|[^a-z])key(s)?($|[^a-z])|key$")
_URL_CREDS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")


def is_secret_key(name: str) -> bool:
    """True for option names that usually hold credentials (token, password, *_key, ...)."""
    n = str(name).lower()
    return any(w in n for w in _SECRET_WORDS) or bool(_KEY_WORD.search(n))


def mask_secrets(value: Any) -> Any:
    """A copy of `value` with credential-looking entries replaced by '***'.

    Dict entries whose key names a secret are masked whole; strings lose the password of
    `scheme://user:password@host` URLs and anything shaped like an AWS access key id.
    """
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_secret_key(k) and v not in (None, "") else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        value = _URL_CREDS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", value)
        return _AWS_KEY_ID.sub(MASK, value)
    return value
