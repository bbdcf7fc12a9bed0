"""`ikev2 up NAME --no-child` (a childless IKE SA, RFC 6023) and `ikev2 up NAME --child CHILD`
(that child by CREATE_CHILD_SA under the IKE SA we hold), two daemons on loopback, CLI only."""

from __future__ import annotations

from .daemons import daemon_pair


async def test_no_child_then_children_under_the_same_ike_sa() -> None:
    async with daemon_pair() as pair:
        code, out, err = await pair.moon.cli("up", "net", "--no-child")
        assert code == 0, err
        [moon] = await pair.moon.sas()
        [sun] = await pair.sun.sas()
        assert moon["state"] == sun["state"] == "established"
        assert moon["children"] == [] and sun["children"] == []
        for expected in (1, 2):  # a second --child makes one more, as swanctl --initiate --child
            code, out, err = await pair.moon.cli("up", "net", "--child", "net")
            assert code == 0, err
            [again] = await pair.moon.sas()
            assert again["id"] == moon["id"] and len(again["children"]) == expected
            [sun] = await pair.sun.sas()
            assert len(sun["children"]) == expected
        spis = {c["spi_in"] for c in again["children"]}
        assert spis == {c["spi_out"] for c in sun["children"]} and len(spis) == 2
        assert "10.0.1.0/24 === 10.0.2.0/24" in out  # the answer lists the IKE SA's children


async def test_child_without_an_ike_sa_starts_one_and_unknown_child_fails() -> None:
    async with daemon_pair() as pair:
        code, _out, err = await pair.moon.cli("up", "net", "--child", "nosuch")
        assert code != 0 and "has no child 'nosuch'" in err
        assert await pair.moon.sas() == []
        code, _out, err = await pair.moon.cli("up", "net", "--child", "net")
        assert code == 0, err
        [moon] = await pair.moon.sas()
        assert len(moon["children"]) == 1
        code, _out, err = await pair.moon.cli("up", "net", "--child", "net", "--no-child")
        assert code != 0 and "not allowed with" in err
