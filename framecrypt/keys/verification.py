"""SAS verification of a member's pairwise channels.

One :class:`~framecrypt.keys.sas.SasVerification` per peer with a ready channel, started
by either side (:meth:`VerificationPolicy.start_verification` or a received
``sas-start``); the user compares the short authentication string shown by
:class:`~framecrypt.keys.actions.SasReady` and calls
:meth:`VerificationPolicy.confirm_sas`.
"""

from __future__ import annotations

from .actions import Action, SasFailed, SasReady, SasVerified, Send
from .envelope import Message
from .errors import UnexpectedMessage, UnknownSession, VerificationFailed
from .member_state import MemberState
from .olm import OlmChannel
from .sas import SasVerification


class VerificationPolicy(MemberState):
    """The SAS part of :class:`~framecrypt.keys.policy.Member`."""

    def start_verification(self, peer: str, now: float) -> list[Action]:
        """Start SAS verification of the channel with ``peer``."""
        ch = self._channels.get(peer)
        if ch is None or not ch.ready:
            raise UnknownSession(peer)
        sas = self._new_sas(peer, ch)
        self._sas[peer] = sas
        return [Send(peer, sas.start())]

    def confirm_sas(self, peer: str, matches: bool, now: float) -> list[Action]:
        """The user compared the emoji with ``peer``'s: ``matches`` or not."""
        sas = self._sas.get(peer)
        if sas is None:
            raise UnknownSession(peer, "no verification")
        try:
            step = sas.confirm(matches)
        except VerificationFailed as e:
            return [SasFailed(peer, e.reason)]
        out: list[Action] = [Send(peer, m) for m in step.replies]
        if step.verified:
            out.append(SasVerified(peer))
        return out

    def _new_sas(self, peer: str, ch: OlmChannel) -> SasVerification:
        presence = self._presence.get(peer, {})
        return SasVerification(
            self.id, peer, own_ed25519=self.identity.ed25519,
            own_curve25519=self.identity.curve25519,
            peer_ed25519=presence.get("ed25519") or ch.peer_ed25519,
            peer_curve25519=ch.peer_curve25519, style=self.config.sas_style,
            uuid_factory=self._uuid)

    def _on_sas(self, peer: str, msg: Message, now: float) -> list[Action]:
        ch = self._channels.get(peer)
        if ch is None or not ch.ready:
            raise UnknownSession(peer)
        sas = self._sas.get(peer)
        if msg.KIND == "sas-start" and (sas is None or sas.state in ("done", "failed")):
            sas = self._new_sas(peer, ch)
            self._sas[peer] = sas
        if sas is None:
            raise UnexpectedMessage("no verification in progress", peer)
        try:
            step = sas.receive(msg)
        except VerificationFailed as e:
            return [SasFailed(peer, e.reason)]
        out: list[Action] = [Send(peer, m) for m in step.replies]
        if step.ready is not None:
            out.append(SasReady(peer, step.ready))
        if step.verified:
            out.append(SasVerified(peer))
        return out


__all__ = ["VerificationPolicy"]
