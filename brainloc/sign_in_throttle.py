"""Sign-in throttle by client address: one network address that fails too often is refused.

The per-account lockout (:mod:`brainloc.accounts`) stops many guesses at one account; it does
not stop one client from trying one password against many usernames (password spraying) or
from guessing which usernames exist. So every failed sign-in also records the address it came
from (:data:`db.models.AuditEvent.client_address`, and ``address`` in the event's detail), and
an address with :data:`MAX_ADDRESS_FAILURES` failures within :data:`ADDRESS_FAILURE_WINDOW` is
refused before any password or code is checked, whichever username it names (the refusal is
audited as ``login_failed`` with reason :data:`THROTTLED_REASON`). Pure logic over :mod:`db`
(no Streamlit): the sign-in page passes ``st.context.ip_address`` in.

Rules, and why:

* The count is read from the audit log, so it survives restarts and holds across several app
  processes on one database, like the account lockout.
* A refusal by the throttle is not counted itself (it checked nothing): the address is free
  again once the failures that caused it have left the window, and the refusal says when.
* A successful sign-in does not clear the count. An attacker with one valid account of their
  own could otherwise sign in after every few guesses and spray without end; a person who
  mistyped a few times is far from the limit anyway.
* An unknown address (None: Streamlit reports none for loopback connections, and in tests) is
  not throttled; the account lockout still applies. Behind a reverse proxy the address is the
  proxy's unless the server trusts the proxy's ``X-Forwarded-For`` (see the README).
* Addresses are compared in their canonical form (``ipaddress``): an IPv6 address written
  another way, or an IPv4 address mapped into IPv6, is the same address. A client that holds
  many addresses (an IPv6 prefix, say) gets the limit once per address.
* Attempts already under way when the limit is reached still finish, so requests sent in
  parallel can exceed it by as many as run at once; the server's bcrypt cost bounds those.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime, timedelta

from sqlmodel import Session

from db.audit import TARGET_USER, Action, nth_newest_from_address, record_event

#: Failed sign-ins from one address within :data:`ADDRESS_FAILURE_WINDOW` that refuse it.
#: Well above the account lockout's 5, so a few colleagues behind one address who mistype
#: are not refused, and far below what spraying needs.
MAX_ADDRESS_FAILURES = 20
ADDRESS_FAILURE_WINDOW = timedelta(minutes=15)
#: The longest address kept (the column's size): an IPv6 address with a zone fits.
MAX_ADDRESS_CHARS = 64
#: The audit reason of a sign-in refused by the throttle.
THROTTLED_REASON = "too many failed sign-ins from this address"


def client_key(address: str | None) -> str | None:
    """``address`` as the throttle counts it: canonical (``"2001:DB8::0:1"`` ->
    ``"2001:db8::1"``, ``"::ffff:192.0.2.7"`` -> ``"192.0.2.7"``), at most
    :data:`MAX_ADDRESS_CHARS` characters; None for an unknown (None or blank) address."""
    text = (address or "").strip()
    if not text:
        return None
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return text[:MAX_ADDRESS_CHARS]  # not an IP address (a socket path?): kept as it is
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return str(parsed)[:MAX_ADDRESS_CHARS]


def throttled_until(session: Session, *, address: str | None, at: datetime) -> datetime | None:
    """When ``address`` may try again, if it is refused at ``at``; None when it is not
    (fewer than :data:`MAX_ADDRESS_FAILURES` failures within the window, or no address).

    The moment is when the oldest failure that keeps it at the limit leaves the window.
    """
    key = client_key(address)
    if key is None:
        return None
    limiting = nth_newest_from_address(
        session, client_address=key, action=Action.LOGIN_FAILED,
        after=at - ADDRESS_FAILURE_WINDOW, n=MAX_ADDRESS_FAILURES,
    )  # fmt: skip
    return None if limiting is None else limiting + ADDRESS_FAILURE_WINDOW


def wait_text(until: datetime, *, at: datetime) -> str:
    """How long from ``at`` until ``until``, in whole minutes rounded up, for a refusal's
    "try again in …": ``"1 minute"``, ``"15 minutes"`` (never less than one)."""
    minutes = max(1, math.ceil((until - at).total_seconds() / 60))
    return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"


def throttled_message(until: datetime, *, at: datetime) -> str:
    """What the sign-in page says to a refused address: the same for every username."""
    return (
        "Sign-in failed: too many failed sign-ins came from this network address. "
        f"Try again in {wait_text(until, at=at)}."
    )


def record_throttled(
    session: Session,
    *,
    address: str | None,
    at: datetime,
    detail: dict | None = None,
    user_id: int | None = None,
) -> None:
    """Audit a sign-in refused by the throttle (``login_failed``, reason
    :data:`THROTTLED_REASON`, the address in ``detail``). It names no actor and fills no
    ``client_address``, so it counts towards neither the account lockout nor the throttle;
    ``user_id`` (a second step's account) makes it the account's event as a target."""
    record_event(
        session, action=Action.LOGIN_FAILED, actor_id=None, at=at,
        target_type=TARGET_USER if user_id is not None else None, target_id=user_id,
        detail={**(detail or {}), "reason": THROTTLED_REASON, "address": client_key(address)},
    )  # fmt: skip
