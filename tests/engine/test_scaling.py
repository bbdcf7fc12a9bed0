"""No per-message scan of every IKE SA on the responder (issue 17: 100,000 IKE SAs).

A gateway holding N IKE SAs must handle each IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA and
INFORMATIONAL in time independent of N. Timing that is flaky on a loaded machine, so these tests
make the check exact: the responder's table of IKE SAs is replaced by one that fails the test
when anything iterates it, and whole lifecycles run through it. A scan of every SA per
IKE_AUTH (engine/unique.py did one for INITIAL_CONTACT and `unique`) made the daemon's cost per
handshake grow with the SAs it held: 2.9 ms at 3,000 SAs against 0.33 ms for the first ones.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any

import pytest

from ikev2.engine.config import EngineConfig, Unique
from ikev2.engine.events import ChildSaEstablished, IkeSaDeleted, IkeSaEstablished

from .pairing import Pair, psk_connections, with_


class Unscannable(dict[int, Any]):
    """A dict of IKE SAs that may be indexed but not iterated."""

    def _scan(self) -> None:
        raise AssertionError("the engine iterated every IKE SA while handling one message")

    def __iter__(self) -> Iterator[int]:
        self._scan()
        return super().__iter__()

    def values(self) -> ValuesView[Any]:
        self._scan()
        return super().values()

    def items(self) -> ItemsView[int, Any]:
        self._scan()
        return super().items()

    def keys(self) -> KeysView[int]:
        self._scan()
        return super().keys()


def guarded_pair(unique: Unique, contact: bool) -> Pair:
    conn_i, conn_r = psk_connections()
    pair = Pair(
        with_(conn_i, send_initial_contact=contact), conn_r,
        engine_r=EngineConfig((with_(conn_r, unique=unique),)),
    )  # fmt: skip
    pair.r.engine.sas = Unscannable(pair.r.engine.sas)
    return pair


@pytest.mark.parametrize("unique", [Unique.NO, Unique.REPLACE, Unique.KEEP, Unique.NEVER])
@pytest.mark.parametrize("contact", [True, False])
def test_responder_lifecycle_never_scans_all_sas(unique: Unique, contact: bool) -> None:
    pair = guarded_pair(unique, contact)
    for _ in range(3):  # the first one carries INITIAL_CONTACT when `contact`
        pair.initiate()
        pair.run(until=pair.now + 5)
    established = pair.i.of(IkeSaEstablished)
    assert len(established) >= 1
    sa_id = established[-1].ike_sa_id
    child = [e for e in pair.i.of(ChildSaEstablished) if e.ike_sa_id == sa_id][-1]
    pair.i.events += pair.i.engine.rekey_child(sa_id, child.inbound.spi, pair.now)
    pair.run(until=pair.now + 5)
    pair.i.events += pair.i.engine.rekey_ike(sa_id, pair.now)
    pair.run(until=pair.now + 5)
    pair.run(until=pair.now + 200)  # DPD both ways, the rekeyed IKE SA's DELETE
    children = pair.r.of(ChildSaEstablished)
    assert len(children) >= len(established) + 1  # the child rekey reached the responder
    for view in pair.i.engine.list_sas():
        pair.i.events += pair.i.engine.terminate(view.id, pair.now)
    pair.run(until=pair.now + 30)
    assert pair.r.of(IkeSaDeleted)
    assert not dict.__len__(pair.r.engine.sas), "the responder kept IKE SAs after the deletes"


def test_initial_contact_still_replaces_the_old_sas() -> None:
    """The index keeps INITIAL_CONTACT's semantics: a new SA that says it is the peer's only
    one replaces every other SA between the same identities (RFC 7296 §2.4)."""
    conn_i, conn_r = psk_connections()
    pair = Pair(with_(conn_i, send_initial_contact=False), conn_r)
    pair.r.engine.sas = Unscannable(pair.r.engine.sas)
    for _ in range(3):
        pair.initiate()
        pair.run(until=pair.now + 5)
    assert dict.__len__(pair.r.engine.sas) == 3
    fresh = Pair(conn_i, conn_r)  # a restarted initiator: no SAs, so it sends INITIAL_CONTACT
    fresh.r = pair.r
    fresh.now = pair.now
    fresh.initiate()
    fresh.run(until=fresh.now + 5)
    assert len(fresh.i.of(IkeSaEstablished)) == 1
    assert dict.__len__(pair.r.engine.sas) == 1, "INITIAL_CONTACT did not replace the old SAs"
