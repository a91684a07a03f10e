"""The Janus core API over WebSocket: a session, plugin handles, transactions.

Used by :mod:`framecrypt.webrtc.janus` (the VideoRoom client); usable for any plugin.
Transport: the `websockets` library (asyncio client, subprotocol ``janus-protocol``).

Every request is bounded by a timeout (:class:`JanusTimeout`); Janus's refusals raise
:class:`JanusError` with the core's or the plugin's error code; a reply or event that is
not what the Janus API defines raises :class:`JanusProtocolError`; when the connection
closes or the session times out every pending request fails with :class:`JanusClosed`:
no future is left hanging. A keepalive goes out every ``keepalive_s`` (Janus drops a
session after ``session_timeout``, 60 s by default, without a request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from .errors import JanusClosed, JanusError, JanusProtocolError, JanusTimeout

log = logging.getLogger("framecrypt.webrtc.janus")

MAX_MESSAGE = 1 << 20  # bytes: a Janus message larger than this is refused
PLUGIN_EVENTS = ("event", "webrtcup", "media", "slowlink", "hangup", "detached", "trickle")


def obj(value: object, what: str, request: str = "") -> dict[str, Any]:
    """``value`` as a JSON object, or :class:`JanusProtocolError`."""
    if not isinstance(value, dict):
        raise JanusProtocolError(f"{what} is not an object", request)
    return value


def integer(d: dict[str, Any], key: str, what: str, request: str = "") -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise JanusProtocolError(f"{what}.{key} is not an integer", request)
    return v


def text(d: dict[str, Any], key: str, what: str, request: str = "",
         default: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise JanusProtocolError(f"{what}.{key} is not a string", request)
    return v


@dataclass(frozen=True)
class PluginMessage:
    """One plugin answer or event: ``data`` is the plugin's object (``plugindata.data``),
    ``jsep`` the SDP that came with it (``{"type", "sdp"}``) or None, ``kind`` the core
    message type (``success``, ``event``, ``webrtcup``, ``hangup``, ...)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    jsep: dict[str, str] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _jsep(msg: dict[str, Any], request: str) -> dict[str, str] | None:
    j = msg.get("jsep")
    if j is None:
        return None
    j = obj(j, "jsep", request)
    kind, sdp = text(j, "type", "jsep", request), text(j, "sdp", "jsep", request)
    if kind not in ("offer", "answer"):
        raise JanusProtocolError(f"jsep.type {kind!r}", request)
    return {"type": kind, "sdp": sdp}


def plugin_message(msg: dict[str, Any], request: str = "") -> PluginMessage:
    """Parse a ``success``/``event`` carrying ``plugindata``; a plugin error (the data
    has ``error_code``) raises :class:`JanusError` with that code."""
    kind = text(msg, "janus", "message", request)
    data: dict[str, Any] = {}
    if "plugindata" in msg:
        pd = obj(msg["plugindata"], "plugindata", request)
        data = obj(pd.get("data"), "plugindata.data", request)
        if "error_code" in data or "error" in data:
            code = data.get("error_code")
            if isinstance(code, bool) or not isinstance(code, int):
                raise JanusProtocolError("plugin error without an integer error_code", request)
            reason = data.get("error")
            raise JanusError(code, reason if isinstance(reason, str) else "", request)
    return PluginMessage(kind, data, _jsep(msg, request), msg)


class Handle:
    """One plugin handle in a :class:`JanusSession`. Unsolicited events (no matching
    transaction) go to ``on_event`` (set by the owner), on the session's reader task."""

    def __init__(self, session: JanusSession, handle_id: int, plugin: str) -> None:
        self.session = session
        self.id = handle_id
        self.plugin = plugin
        self.on_event: Callable[[PluginMessage], None] | None = None
        self.detached = False

    def __repr__(self) -> str:
        return f"Handle(id={self.id}, plugin={self.plugin!r})"

    async def request(self, body: dict[str, Any], *, timeout: float | None = None
                      ) -> PluginMessage:
        """A synchronous plugin request (``create``, ``list``, ``listparticipants``,
        ...): Janus answers ``success`` with the plugin's data at once."""
        name = str(body.get("request", "message"))
        msg = await self.session.send({"janus": "message", "handle_id": self.id,
                                       "body": body}, name, timeout=timeout)
        pm = plugin_message(msg, name)
        if pm.kind != "success":
            raise JanusProtocolError(f"{pm.kind!r} where success was expected", name)
        return pm

    async def message(self, body: dict[str, Any], jsep: dict[str, Any] | None = None, *,
                      timeout: float | None = None) -> PluginMessage:
        """An asynchronous plugin request (``join``, ``publish``, ``configure``,
        ``start``, ...): Janus acks, then answers with an ``event`` of the same
        transaction (with a jsep where the request negotiates)."""
        name = str(body.get("request", "message"))
        req: dict[str, Any] = {"janus": "message", "handle_id": self.id, "body": body}
        if jsep is not None:
            req["jsep"] = jsep
        msg = await self.session.send(req, name, timeout=timeout, final_only=True)
        pm = plugin_message(msg, name)
        if pm.kind not in ("event", "success"):
            raise JanusProtocolError(f"{pm.kind!r} where an event was expected", name)
        return pm

    async def detach(self, timeout: float = 3.0) -> None:
        if self.detached or self.session.closed:
            self.detached = True
            return
        self.detached = True
        with contextlib.suppress(JanusError):
            await self.session.send({"janus": "detach", "handle_id": self.id}, "detach",
                                    timeout=timeout)
        self.session.handles.pop(self.id, None)


class JanusSession:
    """A Janus session over one WebSocket (see the module docstring)."""

    def __init__(self, ws: ClientConnection, *, timeout: float, keepalive_s: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.keepalive_s = keepalive_s
        self.id = 0
        self.handles: dict[int, Handle] = {}
        self.closed = False
        self.close_reason = ""
        self.on_closed: Callable[[str], None] | None = None
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], bool, str]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"JanusSession(id={self.id}, handles={len(self.handles)}, closed={self.closed})"

    @classmethod
    async def open(cls, url: str, *, timeout: float = 10.0,
                   keepalive_s: float = 25.0) -> JanusSession:
        """Connect to Janus's WebSocket API at ``url`` and create a session."""
        try:
            ws = await connect(url, subprotocols=[Subprotocol("janus-protocol")],
                               open_timeout=timeout, close_timeout=2, max_size=MAX_MESSAGE,
                               proxy=None, compression=None)
        except TimeoutError as e:
            raise JanusTimeout("connect", timeout) from e
        except (OSError, InvalidHandshake, InvalidURI) as e:
            raise JanusClosed(f"cannot connect to {url}: {type(e).__name__}") from e
        session = cls(ws, timeout=timeout, keepalive_s=keepalive_s)
        session._reader = asyncio.create_task(session._read(), name="janus-reader")
        try:
            reply = await session.send({"janus": "create"}, "create", with_session=False)
            session.id = integer(obj(reply.get("data"), "data", "create"), "id", "data",
                                 "create")
        except BaseException:
            await session.close()
            raise
        session._keepalive = asyncio.create_task(session._keepalives(), name="janus-keepalive")
        return session

    async def attach(self, plugin: str) -> Handle:
        reply = await self.send({"janus": "attach", "plugin": plugin}, "attach")
        hid = integer(obj(reply.get("data"), "data", "attach"), "id", "data", "attach")
        handle = Handle(self, hid, plugin)
        self.handles[hid] = handle
        return handle

    async def send(self, msg: dict[str, Any], name: str, *, timeout: float | None = None,
                   final_only: bool = False, with_session: bool = True) -> dict[str, Any]:
        """Send ``msg`` with a fresh transaction; the reply (after the ``ack`` when
        ``final_only``), or a typed error. Bounded by ``timeout``."""
        if self.closed:
            raise JanusClosed(self.close_reason or "session closed")
        tx = secrets.token_hex(8)
        msg = {**msg, "transaction": tx}
        if with_session:
            msg["session_id"] = self.id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[tx] = (fut, final_only, name)
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                await self.ws.send(json.dumps(msg))
                reply = await fut
        except TimeoutError as e:
            raise JanusTimeout(name, limit) from e
        except ConnectionClosed as e:
            raise JanusClosed(f"connection closed ({name})") from e
        finally:
            self._pending.pop(tx, None)
        kind = reply.get("janus")
        if kind == "error":
            err = obj(reply.get("error"), "error", name)
            code = err.get("code")
            reason = err.get("reason")
            raise JanusError(code if isinstance(code, int) and not isinstance(code, bool)
                             else None, reason if isinstance(reason, str) else "", name)
        return reply

    # --- the reader ----------------------------------------------------------------------

    async def _read(self) -> None:
        reason = "connection closed"
        protocol = False
        try:
            async for raw in self.ws:
                self._dispatch(raw)
        except ConnectionClosed:
            pass
        except JanusProtocolError as e:
            reason, protocol = e.reason, True
        except asyncio.CancelledError:
            reason = "session closed"
            raise
        finally:
            self._fail_all(reason, protocol)

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise JanusProtocolError("a message that is not JSON") from e
        if not isinstance(msg, dict) or not isinstance(msg.get("janus"), str):
            raise JanusProtocolError("a message without a 'janus' type")
        kind = msg["janus"]
        log.debug("janus <- %s", msg)
        tx = msg.get("transaction")
        entry = self._pending.get(tx) if isinstance(tx, str) else None
        if entry is not None:
            fut, final_only, _name = entry
            if kind == "ack" and final_only:
                return
            if not fut.done():
                fut.set_result(msg)
            return
        if kind == "timeout":  # Janus dropped the session (no keepalive in time)
            self._fail_all("session timed out at the server")
            return
        if kind in PLUGIN_EVENTS:
            sender = msg.get("sender")
            handle = self.handles.get(sender) if isinstance(sender, int) else None
            if handle is None or handle.on_event is None:
                return
            try:
                pm = plugin_message(msg, kind)
            except JanusError as e:
                pm = PluginMessage("error", {"error_code": e.code, "error": e.reason}, None, msg)
            if kind == "detached":
                handle.detached = True
            handle.on_event(pm)
            return
        log.debug("janus: unsolicited %s ignored: %s", kind, msg)

    def _fail_all(self, reason: str, protocol: bool = False) -> None:
        """Close, and fail every pending request: :class:`JanusProtocolError` when the
        server sent something the API does not define, else :class:`JanusClosed`."""
        if not self.closed:
            self.closed = True
            self.close_reason = reason
        for fut, _final, name in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(JanusProtocolError(reason.removeprefix("malformed: "), name)
                                  if protocol else JanusClosed(f"{reason} ({name})"))
        self._pending.clear()
        if self.on_closed is not None:
            cb, self.on_closed = self.on_closed, None
            cb(reason)

    async def _keepalives(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self.send({"janus": "keepalive"}, "keepalive")
            except JanusError as e:
                log.warning("janus keepalive failed: %s", e)
                return

    async def close(self, timeout: float = 3.0) -> None:
        """Destroy the session (bounded) and close the connection."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        if not self.closed and self.id:
            with contextlib.suppress(JanusError):
                await self.send({"janus": "destroy"}, "destroy", timeout=timeout)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._keepalive is not None:
            await asyncio.gather(self._keepalive, return_exceptions=True)
        self._fail_all("session closed")
