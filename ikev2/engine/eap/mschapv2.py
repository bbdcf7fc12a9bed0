"""EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2-02 on RFC 2759; MSK from RFC 3079): type 26.

    Type-Data:  OpCode (1) | MS-CHAPv2-ID (1) | MS-Length (2) | data
    Challenge (1):  Value-Size=16 | Authenticator-Challenge | Name              server -> peer
    Response  (2):  Value-Size=49 | Peer-Challenge(16) 0(8) NT-Response(24) Flags(1) | Name
    Success   (3):  "S=<AuthenticatorResponse> M=<message>"  (the peer answers OpCode 3 alone)
    Failure   (4):  "E=691 R=0 C=<challenge> V=3 M=<message>" (the peer answers OpCode 4 alone)

The primitives are RFC 2759 §8 (NtPasswordHash on MD4, ChallengeResponse on DES) and RFC 3079
§3.4 (MasterKey, the asymmetric start keys); tests check them against RFC 2759 §9.2 and RFC 3079
§3.5.3. DES comes from `cryptography`'s decrepit TripleDES with K|K|K (EDE with one key is DES);
MD4 is md4.py. The MSK is MasterReceiveKey | MasterSendKey | 32 zero octets, both keys as the
server names them (what strongSwan and Windows use for IKEv2).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from .base import EapType, Outcome, Step, fail
from .md4 import md4

OP_CHALLENGE, OP_RESPONSE, OP_SUCCESS, OP_FAILURE = 1, 2, 3, 4
CHALLENGE_BYTES = 16
RESPONSE_VALUE_BYTES = 49
AUTH_RESPONSE_TEXT = 42  # "S=" and 40 hex digits
# RFC 2759 §8.7
_AUTH_MAGIC1 = b"Magic server to client signing constant"
_AUTH_MAGIC2 = b"Pad to make it do more than one iteration"
# RFC 3079 §3.4
_MPPE_MAGIC1 = b"This is the MPPE Master Key"
_MPPE_MAGIC2 = (
    b"On the client side, this is the send key; on the server side, it is the receive key."
)
_MPPE_MAGIC3 = (
    b"On the client side, this is the receive key; on the server side, it is the send key."
)
_SHS_PAD1, _SHS_PAD2 = b"\x00" * 40, b"\xf2" * 40


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts), usedforsecurity=False).digest()


def nt_password_hash(password: bytes) -> bytes:
    """RFC 2759 §8.3: MD4 of the password in UTF-16LE (the secret is given as UTF-8)."""
    return md4(password.decode("utf-8", "replace").encode("utf-16-le"))


def challenge_hash(peer_challenge: bytes, auth_challenge: bytes, username: bytes) -> bytes:
    """RFC 2759 §8.2 (the user name without any Windows domain, §8.1)."""
    return _sha1(peer_challenge, auth_challenge, strip_domain(username))[:8]


def strip_domain(username: bytes) -> bytes:
    return username.rpartition(b"\\")[2]


# each 7-bit key group shifted left, with the odd-parity bit in the low bit (RFC 2759 §8.6)
_WITH_PARITY = bytes((v << 1) | (bin(v).count("1") % 2 == 0) for v in range(128))
_SHIFTS_56 = (49, 42, 35, 28, 21, 14, 7, 0)


def _des_key(seven: bytes) -> bytes:
    """RFC 2759 §8.6: 56 key bits spread over 8 octets, odd parity in the low bit."""
    bits = int.from_bytes(seven, "big")
    return bytes(_WITH_PARITY[(bits >> shift) & 0x7F] for shift in _SHIFTS_56)


def _des(key7: bytes, block: bytes) -> bytes:
    key = _des_key(key7)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """RFC 2759 §8.5: DES of the 8-octet challenge under three 7-octet slices of the hash."""
    z = password_hash + b"\x00" * 5
    return b"".join(_des(z[i : i + 7], challenge) for i in (0, 7, 14))


def nt_response(
    auth_challenge: bytes, peer_challenge: bytes, username: bytes, password: bytes
) -> bytes:
    """RFC 2759 §8.1 GenerateNTResponse."""
    return _nt_response(auth_challenge, peer_challenge, username, nt_password_hash(password))


def _nt_response(
    auth_challenge: bytes, peer_challenge: bytes, username: bytes, password_hash: bytes
) -> bytes:
    digest = challenge_hash(peer_challenge, auth_challenge, username)
    return challenge_response(digest, password_hash)


def authenticator_response(
    password: bytes,
    nt_resp: bytes,
    peer_challenge: bytes,
    auth_challenge: bytes,
    username: bytes,
) -> bytes:
    """RFC 2759 §8.7 GenerateAuthenticatorResponse: b"S=" and 40 upper-case hex digits."""
    hash_hash = md4(nt_password_hash(password))
    return _authenticator_response(hash_hash, nt_resp, peer_challenge, auth_challenge, username)


def _authenticator_response(
    hash_hash: bytes, nt_resp: bytes, peer_challenge: bytes, auth_challenge: bytes, username: bytes
) -> bytes:
    digest = _sha1(hash_hash, nt_resp, _AUTH_MAGIC1)
    digest = _sha1(digest, challenge_hash(peer_challenge, auth_challenge, username), _AUTH_MAGIC2)
    return b"S=" + digest.hex().upper().encode()


def master_key(password: bytes, nt_resp: bytes) -> bytes:
    """RFC 3079 §3.4 GetMasterKey."""
    return _master_key(md4(nt_password_hash(password)), nt_resp)


def _master_key(hash_hash: bytes, nt_resp: bytes) -> bytes:
    return _sha1(hash_hash, nt_resp, _MPPE_MAGIC1)[:16]


def asymmetric_start_key(master: bytes, *, send: bool, server: bool) -> bytes:
    """RFC 3079 §3.4 GetAsymmetricStartKey, 128-bit keys."""
    magic = _MPPE_MAGIC3 if send == server else _MPPE_MAGIC2
    return _sha1(master, _SHS_PAD1, magic, _SHS_PAD2)[:16]


def msk(password: bytes, nt_resp: bytes) -> bytes:
    """The 64-octet MSK: the server's receive key, its send key, 32 zero octets."""
    return _msk(md4(nt_password_hash(password)), nt_resp)


def _msk(hash_hash: bytes, nt_resp: bytes) -> bytes:
    master = _master_key(hash_hash, nt_resp)
    receive = asymmetric_start_key(master, send=False, server=True)
    send = asymmetric_start_key(master, send=True, server=True)
    return receive + send + b"\x00" * 32


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One challenge's results, from the password hashed once (MD4 is pure Python here)."""

    nt_response: bytes = field(repr=False)
    authenticator_response: bytes = field(repr=False)
    msk: bytes = field(repr=False)


def _exchange(
    password: bytes, auth_challenge: bytes, peer_challenge: bytes, user: bytes
) -> _Exchange:
    password_hash = nt_password_hash(password)
    hash_hash = md4(password_hash)
    nt = _nt_response(auth_challenge, peer_challenge, user, password_hash)
    auth = _authenticator_response(hash_hash, nt, peer_challenge, auth_challenge, user)
    return _Exchange(nt, auth, _msk(hash_hash, nt))


def _packet(opcode: int, ms_id: int, body: bytes) -> bytes:
    return struct.pack("!BBH", opcode, ms_id, 4 + len(body)) + body


def _header(data: bytes) -> tuple[int, int, bytes] | None:
    """(OpCode, MS-CHAPv2-ID, body) of a long-form packet, None when malformed."""
    if len(data) < 4:
        return None
    opcode, ms_id, ms_length = struct.unpack_from("!BBH", data)
    if ms_length < 4 or ms_length > len(data):
        return None
    return opcode, ms_id, data[4:ms_length]


class MsChapV2Server:
    eap_type = EapType.MSCHAPV2

    def __init__(
        self,
        server_name: bytes,
        secret: Callable[[bytes], bytes | None],
        random: Callable[[int], bytes],
    ) -> None:
        self._name = server_name
        self._secret = secret
        self._challenge = random(CHALLENGE_BYTES)
        self._ms_id = random(1)[0]
        self._state = "challenge"
        self._msk: bytes | None = None
        self._user = b""

    def start(self, identifier: int) -> bytes:
        self._state = "response"
        body = bytes([CHALLENGE_BYTES]) + self._challenge + self._name
        return _packet(OP_CHALLENGE, self._ms_id, body)

    def process(self, identifier: int, data: bytes) -> Step:
        if self._state == "response":
            return self._response(data)
        opcode = data[0] if data else -1
        if self._state == "success" and opcode == OP_SUCCESS:
            return Step(Outcome.SUCCESS)
        if self._state == "failure" and opcode == OP_FAILURE:
            return fail("EAP-MSCHAPv2 response does not verify")
        return fail(f"unexpected EAP-MSCHAPv2 OpCode {opcode} in state {self._state}")

    def _response(self, data: bytes) -> Step:
        header = _header(data)
        if header is None or header[0] != OP_RESPONSE or header[1] != self._ms_id:
            return fail("malformed EAP-MSCHAPv2 response")
        body = header[2]
        if len(body) < 1 + RESPONSE_VALUE_BYTES or body[0] != RESPONSE_VALUE_BYTES:
            return fail("EAP-MSCHAPv2 response value of the wrong size")
        peer_challenge, received = body[1:17], body[25:49]
        user = body[1 + RESPONSE_VALUE_BYTES :]
        password = self._secret(user)
        done = (
            _exchange(password, self._challenge, peer_challenge, user)
            if password is not None
            else None
        )
        if done is None or not hmac.compare_digest(done.nt_response, received):
            # RFC 2759 §6 / the draft §2: E=691 (authentication failure), no retry
            self._state = "failure"
            message = b"E=691 R=0 C=" + self._challenge.hex().upper().encode() + b" V=3 M=denied"
            reason = "no such EAP user" if password is None else "NT-Response does not verify"
            return Step(Outcome.CONTINUE, _packet(OP_FAILURE, self._ms_id, message), reason)
        self._user = user
        self._msk = done.msk
        self._state = "success"
        body = done.authenticator_response + b" M=welcome"
        return Step(Outcome.CONTINUE, _packet(OP_SUCCESS, self._ms_id, body))

    def msk(self) -> bytes | None:
        return self._msk

    def peer_name(self) -> bytes:
        return self._user


class MsChapV2Peer:
    eap_type = EapType.MSCHAPV2
    # the Success message proves the server knows the password hash, but RFC 5998 §4 does not
    # count MSCHAPv2 among the methods safe for EAP-only (nor does strongSwan)
    mutual = False

    def __init__(self, username: bytes, password: bytes, random: Callable[[int], bytes]) -> None:
        self._user = username
        self._password = password
        self._peer_challenge = random(CHALLENGE_BYTES)
        self._expected_auth = b""
        self._msk: bytes | None = None

    def process(self, identifier: int, data: bytes) -> Step:
        header = _header(data)
        if header is None:
            return fail("malformed EAP-MSCHAPv2 request")
        opcode, ms_id, body = header
        if opcode == OP_CHALLENGE and not self._expected_auth:
            return self._challenge(ms_id, body)
        if opcode == OP_SUCCESS and self._expected_auth:
            if not hmac.compare_digest(body[:AUTH_RESPONSE_TEXT], self._expected_auth):
                return fail("EAP-MSCHAPv2 server's authenticator response does not verify")
            return Step(Outcome.SUCCESS, bytes([OP_SUCCESS]))
        if opcode == OP_FAILURE:  # answered with OpCode 4 alone; EAP-Failure follows
            reason = "EAP-MSCHAPv2 server refused our response (wrong password?)"
            return Step(Outcome.FAILURE, bytes([OP_FAILURE]), reason)
        return fail(f"unexpected EAP-MSCHAPv2 OpCode {opcode}")

    def _challenge(self, ms_id: int, body: bytes) -> Step:
        if len(body) < 1 + CHALLENGE_BYTES or body[0] != CHALLENGE_BYTES:
            return fail("EAP-MSCHAPv2 challenge of the wrong size")
        auth_challenge = body[1 : 1 + CHALLENGE_BYTES]
        done = _exchange(self._password, auth_challenge, self._peer_challenge, self._user)
        response = done.nt_response
        self._expected_auth = done.authenticator_response
        self._msk = done.msk
        value = self._peer_challenge + b"\x00" * 8 + response + b"\x00"
        return Step(
            Outcome.CONTINUE,
            _packet(OP_RESPONSE, ms_id, bytes([RESPONSE_VALUE_BYTES]) + value + self._user),
        )

    def msk(self) -> bytes | None:
        return self._msk
