"""Registration throttle by client address: one network address may register only so often.

The Register page must tell whoever fills in a complete form that its username or email has
an account (:data:`brainloc.accounts.USERNAME_TAKEN`, :data:`~brainloc.accounts.EMAIL_TAKEN`),
so without a limit a script could ask it, again and again, which usernames and emails exist
(the sign-in page never says), and could fill the administrator's approval queue with pending
accounts. So every registration and every refused registration records the address it came
from (:data:`db.models.AuditEvent.client_address` and ``address`` in the detail of the
``register`` and ``register_refused`` events), and an address is refused before its form is
read, let alone checked or saved, once it has

* :data:`MAX_ADDRESS_REGISTRATIONS` registrations within :data:`REGISTRATION_WINDOW`, or
* :data:`MAX_ADDRESS_REFUSALS` refused registrations (a username or email taken, a field
  invalid) within :data:`REFUSAL_WINDOW`.

The refusal is audited as ``register_refused`` with the reason (:data:`TOO_MANY_REGISTRATIONS`
or :data:`TOO_MANY_REFUSALS`) and the address, and its message says when to try again and
nothing about the form. Pure logic over :mod:`db` (no Streamlit): the Register page passes
``st.context.ip_address`` in.

The rules follow the sign-in throttle's (:mod:`brainloc.sign_in_throttle`), for the same
reasons: the counts are read from the audit log (they survive restarts and hold across app
processes on one database); a refusal by the throttle counts towards neither limit, so the
address is free again once what caused it has left its window; an unknown address (None) is
not throttled; addresses are compared in canonical form (:func:`client_key`); registrations
already under way when a limit is reached still finish.

Why these limits: a department registering its colleagues one after another from one
workstation, or a hospital whose browsers share one address (a proxy that is not trusted, a
NAT), must get through, and a whole pending queue a day from one address must not. Ten
registrations an hour allow the first; an administrator meeting ten pending accounts from one
address in the audit log can reject them before the next ten. People mistype, choose a
password that is too easy to guess or a name that is taken a few times each; twenty refusals
in a quarter of an hour leave a few colleagues room for that, and hold a script to 80 guesses
an hour, as the sign-in throttle does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from brainloc.sign_in_throttle import client_key, wait_text
from db.audit import Action, nth_newest_from_address, record_event

#: Registrations from one address within :data:`REGISTRATION_WINDOW` that refuse it.
MAX_ADDRESS_REGISTRATIONS = 10
REGISTRATION_WINDOW = timedelta(hours=1)
#: Refused registrations (taken or invalid) from one address within :data:`REFUSAL_WINDOW`
#: that refuse it.
MAX_ADDRESS_REFUSALS = 20
REFUSAL_WINDOW = timedelta(minutes=15)
#: The audit reasons of a registration refused by the throttle, for each limit.
TOO_MANY_REGISTRATIONS = "too many registrations from this address"
TOO_MANY_REFUSALS = "too many refused registrations from this address"

_LIMITS = (
    (Action.REGISTER, MAX_ADDRESS_REGISTRATIONS, REGISTRATION_WINDOW, TOO_MANY_REGISTRATIONS),
    (Action.REGISTER_REFUSED, MAX_ADDRESS_REFUSALS, REFUSAL_WINDOW, TOO_MANY_REFUSALS),
)
_MESSAGES = {
    TOO_MANY_REGISTRATIONS: "too many accounts were registered from this network address",
    TOO_MANY_REFUSALS: "too many registrations from this network address were refused",
}


@dataclass(frozen=True)
class Throttled:
    """An address refused by the registration throttle: until when, and which limit."""

    until: datetime
    reason: str

    def message(self, *, at: datetime) -> str:
        """What the Register page says at ``at``: the same whatever the form holds."""
        return (
            f"Registration refused: {_MESSAGES[self.reason]}. "
            f"Try again in {wait_text(self.until, at=at)}."
        )


def registration_throttled(
    session: Session, *, address: str | None, at: datetime
) -> Throttled | None:
    """Whether ``address`` is refused at ``at``, and until when; None when it is not (under
    both limits, or no address). At both limits, the later end is the one that counts.

    The end of a limit is when the oldest event that keeps the address at it leaves the
    window.
    """
    key = client_key(address)
    if key is None:
        return None
    found = []
    for action, limit, window, reason in _LIMITS:
        limiting = nth_newest_from_address(
            session, client_address=key, action=action, after=at - window, n=limit
        )
        if limiting is not None:
            found.append(Throttled(until=limiting + window, reason=reason))
    return max(found, key=lambda throttled: throttled.until, default=None)


def record_registration_throttled(
    session: Session, *, address: str | None, at: datetime, throttled: Throttled
) -> None:
    """Audit a registration refused by the throttle (``register_refused``, its reason, the
    address in ``detail``). It fills no ``client_address``, so it counts towards neither
    limit."""
    record_event(
        session, action=Action.REGISTER_REFUSED, actor_id=None, at=at,
        detail={"reason": throttled.reason, "address": client_key(address)},
    )  # fmt: skip
