"""EAP-MD5-Challenge (RFC 3748 §5.4 on RFC 1994 §4.1)."""

from __future__ import annotations

import hashlib
import random

from ikev2.engine.eap.base import Outcome
from ikev2.engine.eap.md5 import Md5Peer, Md5Server, md5_response


def test_response_value_is_md5_of_identifier_secret_challenge() -> None:
    # RFC 1994 §4.1: "the one-way hash ... of the Identifier, followed by (concatenated with)
    # the secret, followed by the Challenge Value"
    challenge = bytes(range(16))
    expected = hashlib.md5(b"\x2a" + b"secret" + challenge).hexdigest()
    assert md5_response(0x2A, b"secret", challenge).hex() == expected
    assert md5_response(0x2B, b"secret", challenge).hex() != expected


def test_request_and_response_type_data_layout() -> None:
    server = Md5Server(b"carol", {b"carol": b"pw"}.get, random.Random(1).randbytes)
    request = server.start(9)
    assert request[0] == 16 and len(request) == 17  # Value-Size, Value (no Name)
    step = Md5Peer(b"pw").process(9, request)
    assert step.outcome is Outcome.SUCCESS and step.data is not None
    assert step.data[0] == 16 and step.data[1:] == md5_response(9, b"pw", request[1:])
    assert server.process(10, step.data).outcome is Outcome.SUCCESS
    assert server.msk() is None and server.peer_name() == b"carol"


def test_wrong_secret_wrong_identifier_or_unknown_user_fail() -> None:
    for secret, identifier, user in ((b"bad", 9, b"carol"), (b"pw", 8, b"carol"),
                                     (b"pw", 9, b"mallory")):  # fmt: skip
        server = Md5Server(user, {b"carol": b"pw"}.get, random.Random(1).randbytes)
        request = server.start(9)
        step = Md5Peer(secret).process(identifier, request)
        assert step.data is not None
        assert server.process(10, step.data).outcome is Outcome.FAILURE


def test_malformed_type_data_fails_both_ways() -> None:
    server = Md5Server(b"carol", {b"carol": b"pw"}.get, random.Random(1).randbytes)
    server.start(1)
    for data in (b"", b"\x00", b"\x10abc", b"\x05abcd"):
        assert server.process(2, data).outcome is Outcome.FAILURE
        assert Md5Peer(b"pw").process(1, data).outcome is Outcome.FAILURE
