"""``x-ignored-fields``: the body fields a submission carried that the model does not know. They are
accepted, as Segmind does, but named, so a misspelt parameter (``num_frame``) does not go unnoticed.
I2VParams notes them while it validates (``collect_ignored_fields``); this middleware adds the header.
"""

from __future__ import annotations

from urllib.parse import quote

from server.api.params import collect_ignored_fields

HEADER = "x-ignored-fields"
MAX_NAMES = 20
MAX_NAME_CHARS = 64


def header_value(names: list[str]) -> str:
    """'foo, bar'; names percent-encoded where they hold other than printable ASCII (or a comma)."""
    unique = list(dict.fromkeys(names))
    shown = [quote(name[:MAX_NAME_CHARS], safe="!#$&'()*+-./:;<=>?@[]^_`{|}~") for name in unique[:MAX_NAMES]]
    if len(unique) > MAX_NAMES:
        shown.append(f"and {len(unique) - MAX_NAMES} more")
    return ", ".join(shown)


class IgnoredFieldsMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        with collect_ignored_fields() as names:

            async def send_with_header(message) -> None:
                if message["type"] == "http.response.start" and names:
                    headers = [*message.get("headers", []), (HEADER.encode(), header_value(names).encode("ascii"))]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_with_header)
