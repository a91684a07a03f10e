"""Remote membership: workers on other hosts join over tcp + CURVE (only allow-listed
worker public keys get through, ZAP; plain tcp is never offered), become members of
the rendezvous set, and leave when their heartbeats stop.

A participant whose owner changes moves once it is idle (nothing queued or in
flight), preceded by the directory's snapshot of its keys and replay floors, so its
frames stay in order and its keys reach the new owner before its next frame. A lost
remote worker's participants move at once, followed by what it held, in order.
"""

from __future__ import annotations

import os
from typing import Any

from framecrypt.broker.ledger import STARTING, SlotBook
from framecrypt.broker.runs import Control, Span
from framecrypt.broker.service import BrokerService
from framecrypt.conf import ConfigError
from framecrypt.errors import ProtocolError
from framecrypt.transports.to_broker import Ready, parse_to_broker

__all__ = ["RemoteMembers"]


class RemoteMembers:
    def __init__(self, service: BrokerService) -> None:
        self.service = service
        self.by_identity: dict[bytes, SlotBook] = {}
        self.endpoint = ""
        self._auth: Any = None
        service.on_remote = self.on_message
        service.on_remote_lost = self.lost
        service.ledger.on_idle = self.rebalance_soon

    def listen(self) -> None:
        svc = self.service
        rem = svc.settings.remote
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        try:
            public, secret = zmq.auth.load_certificate(rem.secret_key_file)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read remote.secret_key_file: {e.__class__.__name__}",
                              key="remote.secret_key_file", source="settings") from None
        if not secret:
            raise ConfigError("remote.secret_key_file holds no secret key",
                              key="remote.secret_key_file", source="settings")
        if not os.path.isdir(rem.allowed_keys_dir):
            raise ConfigError("remote.allowed_keys_dir is not a directory",
                              key="remote.allowed_keys_dir", source="settings")
        if svc.ctx is None:
            svc.ctx = zmq.Context()
        self._auth = ThreadAuthenticator(svc.ctx)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=rem.allowed_keys_dir)
        sock = svc.router(svc.ctx)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
        sock.bind(rem.listen)
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        svc.remote_sock = sock
        svc.watch(sock, lambda: svc.drain(svc.remote_sock, self.on_message))

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def on_message(self, identity: bytes, parts: list[memoryview]) -> None:
        sl = self.by_identity.get(identity)
        if sl is None:
            self.join(identity, parts)
        else:
            self.service.handle(sl, parts)

    def join(self, identity: bytes, parts: list[memoryview]) -> None:
        """A new remote worker (its first message must be READY): a new slot, a
        member of the rendezvous set from now on."""
        svc, led = self.service, self.service.ledger
        try:
            msg = parse_to_broker(parts)
            if not isinstance(msg, Ready) or svc.closing:
                raise ProtocolError("a new remote worker must start with READY")
        except ProtocolError:
            led.counters["protocol_errors"] += 1
            return
        safe = "".join(c for c in identity.decode("utf-8", "replace")
                       if c.isalnum() or c in "-_.")
        sl = led.add_slot(f"r{len(led.slots)}-{safe[:48]}", remote=True, member=False)
        sl.state = STARTING
        sl.last_heard = svc.now()
        svc.identity[sl.index] = identity
        self.by_identity[identity] = sl
        led.counters["worker_spawns"] += 1
        svc.handle(sl, parts)
        led.members.append(sl.name)
        self.rebalance()

    def rebalance_soon(self) -> None:
        loop = self.service.loop
        if loop is not None:
            loop.call_soon(self.rebalance)

    def rebalance(self) -> None:
        svc, led = self.service, self.service.ledger
        for pidx, old, new in led.rebalance():
            svc.replay(new, pidx, queue=True)
            if old is not None and old.state == "ready":
                led.control(pidx, "remove", (pidx,), None, slot=old)
            led.counters["participants_moved"] += 1
        svc.schedule_flush()

    def lost(self, sl: SlotBook, entries: list[Span | Control]) -> None:
        """A remote worker is gone for good: its participants move to their new
        owners now (snapshot first), followed by what it held, in order."""
        svc, led = self.service, self.service.ledger
        led.drop_member(sl)
        self.by_identity.pop(svc.identity.get(sl.index, b""), None)
        for pidx in led.owned_by(sl):
            new = led.by_name[led.owner_name(pidx)]
            led.reassign(pidx, new)
            svc.replay(new, pidx, queue=True)
            led.counters["participants_moved"] += 1
        for e in entries:
            pidx = e.run.pidx if isinstance(e, Span) else e.pidx
            led.owner(pidx).queue.append(e)
        svc.schedule_flush()
