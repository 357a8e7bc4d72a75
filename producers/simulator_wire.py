"""What a simulated device sends: the JSON value and the bytes of each delivered item.

Web events carry a page URL (whose host the decoder turns back into ``sub_app``), never a sub_app; invalid
items are sent as the JSON value they hold. :func:`wire_bytes` makes the bytes of many items at once.
"""

from __future__ import annotations

from typing import Any

import orjson

from producers.simulator_model import InvalidEvent, SimItem
from schemas.event import ActivityEvent
from schemas.event_json import event_object
from schemas.outcome import WEB_APP


def url_of(event: ActivityEvent) -> str:
    """The page URL a web event carries on the wire; its host gives back ``event.sub_app``."""
    return f"https://www.{event.sub_app}/page/{event.event_id.rsplit('-', 1)[-1]}?utm=cs"


def wire_object(item: SimItem) -> Any:
    """The JSON value a device sends for ``item`` (web events carry a URL, never a sub_app)."""
    if isinstance(item, InvalidEvent):
        return item.obj
    obj = event_object(item)
    if item.app == WEB_APP or not item.app:
        obj.pop("sub_app", None)  # a web page's url stands for its host; no sub_app without an app
    if item.app == WEB_APP:
        obj["url"] = url_of(item)
    return obj


# The v1 JSON of an event as orjson writes schemas.event_json's event dict (same keys, same order, no
# spaces), per shape, to be filled with ``%`` straight from the ActivityEvent tuple (by wire_bytes).
_EVENT_HEAD = (
    '{"v":1,"event_id":"%s","kind":"%s","ts":%d,"district_id":"%s","student_id":"%s",'
    '"device_id":"%s"'
)
_EVENT_BARE = _EVENT_HEAD + "}"
_EVENT_APP = _EVENT_HEAD + ',"app":"%s"}'
_EVENT_APP_SUB = _EVENT_HEAD + ',"app":"%s","sub_app":"%s"}'
_QUOTES_BARE = _EVENT_BARE.count('"')
_QUOTES_APP = _EVENT_APP.count('"')
_QUOTES_APP_SUB = _EVENT_APP_SUB.count('"')
_NOT_CONTROL = bytes(range(0x20, 0x100))


def _escape_free(text: str, quotes: int, backslashes: int) -> bool:
    """Whether ``text`` (JSON made by filling the templates above) needed no escaping: a value with
    a quote adds quotes, one with a backslash or a control character needs an escape, so exactly
    the templates' quotes (``quotes``), the ``backslashes`` of any properly encoded part, and no
    control character prove it."""
    try:
        data = text.encode()
    except UnicodeEncodeError:  # a lone surrogate: let orjson judge it
        return False
    return (
        data.count(b'"') == quotes
        and data.count(b"\\") == backslashes
        and not data.translate(None, _NOT_CONTROL)
    )


def wire_bytes(items: list[SimItem]) -> list[bytes]:
    """``orjson.dumps(wire_object(item))`` of every item: the same bytes, made faster.

    The model's strings (ids formatted from numbers, apps and kinds from the catalogue) need no
    JSON escaping, so its events are formatted straight from their tuples, with no dict per
    event. One check over all the text proves it: each template-made event adds a known number of
    quotes and no backslash or control character (a value holding one would add or need one);
    if the check fails, every item goes through ``orjson`` instead.
    """
    out: list[str] = []
    append = out.append
    quotes = backslashes = 0
    for item in items:
        if type(item) is ActivityEvent:
            app = item[6]
            if not app:
                append(_EVENT_BARE % item[:6])
                quotes += _QUOTES_BARE
                continue
            if app != WEB_APP:
                if item[7]:
                    append(_EVENT_APP_SUB % item)
                    quotes += _QUOTES_APP_SUB
                else:
                    append(_EVENT_APP % item[:7])
                    quotes += _QUOTES_APP
                continue
        encoded = orjson.dumps(wire_object(item)).decode()
        append(encoded)
        quotes += encoded.count('"')
        backslashes += encoded.count("\\")
    if not _escape_free("".join(out), quotes, backslashes):
        return [orjson.dumps(wire_object(i)) for i in items]
    return list(map(str.encode, out))
