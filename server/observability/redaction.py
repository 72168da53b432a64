"""What a URL may show in logs and error messages, and which characters a URL may hold at all.

Image and webhook URLs often carry credentials (``user:pass@``, or a presigned query: ``X-Amz-Signature=``,
``sig=``, ``token=``...) under names that differ per service, so user info and every query value are
redacted: ``https://***@host/path?X-Amz-Signature=***``. Control characters (C0, DEL, C1) have no place in
a URL: a client's CR/LF would reach HTTP headers or forge log lines. URL fields refuse them; logs escape them.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

REDACTED = "***"
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A URL inside free text: scheme://, then anything up to whitespace, a quote or a bracket.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{0,15}://[^\s'\"<>`]+")
# /outputs/<id>/<token>/<file>: the token is what lets anyone download the video.
_OUTPUT_TOKEN_IN_PATH = re.compile(r"^(/outputs/[^/]+/)[^/]+(/)")
_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def control_character_error(value: str) -> str | None:
    """Why a URL value is refused for holding a control character, or None when it holds none."""
    found = CONTROL_CHARACTERS.search(value)
    return f"contains a control character (U+{ord(found.group()):04X}), which no URL may hold" if found else None


def redact_url(url: str) -> str:
    """The URL without its secrets: user info and every query and fragment value become ``***``."""
    text = escape_control_characters(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return _redact_roughly(text)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    redacted = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme or netloc else parts.path
    if parts.query:
        redacted += "?" + _redact_pairs(parts.query)
    if parts.fragment:
        redacted += "#" + _redact_pairs(parts.fragment)
    return redacted


def redact_urls_in(text: str) -> str:
    """Every URL inside free text (a log line, an error message) redacted as ``redact_url`` does."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)


def redact_request_path(path: str) -> str:
    """A request path as it may be logged: the download token of ``/outputs/...`` redacted."""
    return _OUTPUT_TOKEN_IN_PATH.sub(rf"\g<1>{REDACTED}\g<2>", path)


def escape_control_characters(text: str) -> str:
    r"""Control characters written visibly (``\r``, ``\n``, ``\x1b``), so one log record stays one line."""
    if CONTROL_CHARACTERS.search(text) is None:
        return text
    return CONTROL_CHARACTERS.sub(lambda match: _ESCAPES.get(match.group(), f"\\x{ord(match.group()):02x}"), text)


def _redact_pairs(query: str) -> str:
    pairs = [pair.partition("=") for pair in query.split("&") if pair]
    return "&".join(f"{name}={REDACTED}" if equals else REDACTED for name, equals, _ in pairs)


def _redact_roughly(text: str) -> str:
    """For text urlsplit refuses (a broken IPv6 literal): cut user info and everything from '?' or '#'."""
    scheme, sep, rest = text.partition("://")
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in netloc:
        rest = f"{REDACTED}@{rest[len(netloc.rsplit('@', 1)[0]) + 1 :]}"
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    if cut >= 0:
        rest = rest[:cut] + "?" + REDACTED
    return f"{scheme}{sep}{rest}"
