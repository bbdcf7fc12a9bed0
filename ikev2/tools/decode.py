"""`ikev2 decode FILE [--keys TABLE]`: every IKE message of a capture as one JSON object a line.

Each object has the frame number, addresses, the header fields and the payloads (payload_to_json),
or, for a message that does not decode, {"frame", "error", "offset"}. With --keys, messages with
an SK/SKF payload are decrypted by ikev2.tools.decrypt (imported only then) and their inner
payloads appear under "decrypted" (or the reason under "decrypt_error").
"""

from __future__ import annotations

import importlib
import json
import sys
from enum import IntEnum
from typing import Any, TextIO

from ..constants import (
    TRANSFORM_ID_ENUMS,
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    ExchangeType,
    HeaderFlag,
    IdType,
    IpProto,
    KeId,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformAttr,
    TransformType,
    TsType,
)
from ..errors import DecodeError
from ..wire import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CpPayload,
    DeletePayload,
    EapPayload,
    IdPayload,
    KePayload,
    Message,
    NoncePayload,
    NotifyPayload,
    Payload,
    RawTrafficSelector,
    SaPayload,
    SkfPayload,
    SkPayload,
    Transform,
    TsPayload,
    UnknownPayload,
    VendorPayload,
    decode_message,
    encrypted_payload,
)
from .capture import CaptureError, Datagram, read_datagrams


def _enum(enum: type[IntEnum], value: int) -> str | int:
    """The registry name, or the bare number when the value is not registered."""
    try:
        return enum(value).name
    except ValueError:
        return value


def _transform_to_json(transform: Transform) -> dict[str, Any]:
    id_enum = TRANSFORM_ID_ENUMS.get(transform.type)  # type: ignore[call-overload]
    result: dict[str, Any] = {
        "type": _enum(TransformType, transform.type),
        "id": _enum(id_enum, transform.id) if id_enum else transform.id,
        "id_number": transform.id,
    }
    if transform.key_length is not None:
        result["key_length"] = transform.key_length
    if transform.attributes:
        result["attributes"] = [
            {
                "type": _enum(TransformAttr, attr_type),
                "value": value.hex() if isinstance(value, bytes) else value,
            }
            for attr_type, value in transform.attributes
        ]
    return result


def _id_value(payload: IdPayload) -> str | None:
    """A readable form of the identification data where its type has one."""
    try:
        if payload.id_type in (IdType.FQDN, IdType.RFC822_ADDR):
            return payload.data.decode("ascii")
        if payload.id_type == IdType.IPV4_ADDR and len(payload.data) == 4:
            return ".".join(str(octet) for octet in payload.data)
        if payload.id_type == IdType.IPV6_ADDR and len(payload.data) == 16:
            from ipaddress import IPv6Address

            return str(IPv6Address(payload.data))
    except UnicodeDecodeError:
        return None
    return None


def payload_to_json(payload: Payload) -> dict[str, Any]:
    """One payload as a JSON-ready dict: "type" is the payload name, then its fields."""
    name = _enum(PayloadType, payload.payload_type)
    out: dict[str, Any] = {"type": name}
    if isinstance(payload, SaPayload):
        out["proposals"] = [
            {
                "number": proposal.number,
                "protocol": _enum(ProtocolId, proposal.protocol),
                "spi": proposal.spi.hex(),
                "transforms": [_transform_to_json(t) for t in proposal.transforms],
            }
            for proposal in payload.proposals
        ]
    elif isinstance(payload, KePayload):
        out.update(
            group=_enum(KeId, payload.group), group_number=payload.group, data=payload.data.hex()
        )
    elif isinstance(payload, IdPayload):
        out.update(id_type=_enum(IdType, payload.id_type), data=payload.data.hex())
        value = _id_value(payload)
        if value is not None:
            out["value"] = value
    elif isinstance(payload, CertPayload | CertReqPayload):
        out.update(encoding=_enum(CertEncoding, payload.encoding), data=payload.data.hex())
    elif isinstance(payload, AuthPayload):
        out.update(method=_enum(AuthMethod, payload.method), data=payload.data.hex())
    elif isinstance(payload, NoncePayload | VendorPayload | EapPayload):
        out["data"] = payload.data.hex()
    elif isinstance(payload, NotifyPayload):
        out.update(
            notify_type=_enum(NotifyType, payload.notify_type),
            notify_type_number=payload.notify_type,
            protocol=_enum(ProtocolId, payload.protocol),
            spi=payload.spi.hex(),
            data=payload.data.hex(),
        )
    elif isinstance(payload, DeletePayload):
        out.update(
            protocol=_enum(ProtocolId, payload.protocol), spis=[s.hex() for s in payload.spis]
        )
    elif isinstance(payload, TsPayload):
        out["selectors"] = [_selector_to_json(s) for s in payload.selectors]
    elif isinstance(payload, CpPayload):
        out.update(
            cfg_type=_enum(CfgType, payload.cfg_type),
            attributes=[
                {"type": _enum(CfgAttr, a.attr_type), "value": a.value.hex()}
                for a in payload.attributes
            ],
        )
    elif isinstance(payload, SkPayload):
        out.update(
            inner_next_payload=_enum(PayloadType, payload.inner_next_payload),
            body_length=len(payload.body),
            body=payload.body.hex(),
        )
    elif isinstance(payload, SkfPayload):
        out.update(
            inner_next_payload=_enum(PayloadType, payload.inner_next_payload),
            fragment_number=payload.fragment_number,
            total_fragments=payload.total_fragments,
            body_length=len(payload.body),
            body=payload.body.hex(),
        )
    elif isinstance(payload, UnknownPayload):
        out.update(type=payload.payload_type, critical=payload.critical, body=payload.body.hex())
    return out


def _selector_to_json(selector: Any) -> dict[str, Any]:
    if isinstance(selector, RawTrafficSelector):
        return {"ts_type": _enum(TsType, selector.ts_type), "data": selector.data.hex()}
    return {
        "ts_type": _enum(TsType, selector.ts_type),
        "ip_protocol": _enum(IpProto, selector.ip_protocol),
        "start_port": selector.start_port,
        "end_port": selector.end_port,
        "start_addr": str(selector.start_addr),
        "end_addr": str(selector.end_addr),
    }


def message_to_json(message: Message) -> dict[str, Any]:
    header = message.header
    return {
        "exchange": _enum(ExchangeType, header.exchange),
        "flags": [flag.name for flag in HeaderFlag if header.flags & flag],
        "message_id": header.message_id,
        "spi_i": header.spi_i.hex(),
        "spi_r": header.spi_r.hex(),
        "length": header.length,
        "payloads": [payload_to_json(p) for p in message.payloads],
    }


def _endpoint(address: str | None, port: int | None) -> str | None:
    if address is None:
        return None
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _datagram_to_json(datagram: Datagram, decryptor: _Decryptor | None) -> dict[str, Any]:
    if datagram.error is not None:
        return {"frame": datagram.frame, "error": datagram.error, "offset": 0}
    try:
        message = decode_message(datagram.payload)
    except DecodeError as error:
        return {"frame": datagram.frame, "error": error.reason, "offset": error.offset}
    out: dict[str, Any] = {"frame": datagram.frame}
    if datagram.src is not None:
        out["src"] = _endpoint(datagram.src, datagram.sport)
        out["dst"] = _endpoint(datagram.dst, datagram.dport)
    out.update(message_to_json(message))
    if decryptor is not None and encrypted_payload(message) is not None:
        out.update(decryptor.decrypt(datagram.payload, message))
    return out


class _Decryptor:
    """The --keys path: ikev2.tools.decrypt (written by the crypto side), imported lazily."""

    def __init__(self, keys: str) -> None:
        # the module's types are the crypto side's; the contract is the two calls below
        self._module: Any = importlib.import_module("ikev2.tools.decrypt")
        self._table = self._module.load_decryption_table(keys)

    def decrypt(self, raw: bytes, message: Message) -> dict[str, Any]:
        result = self._module.decrypt_message(raw, message, self._table)
        if result.payloads is None:
            return {"decrypt_error": result.error}
        return {"decrypted": [payload_to_json(p) for p in result.payloads]}


def run_decode(path: str, *, keys: str | None, out: TextIO) -> int:
    """Print one JSON line per IKE message of the file; 0 if it was read, 1 if it cannot be."""
    try:
        datagrams = list(read_datagrams(path))
    except (OSError, CaptureError) as error:
        print(f"ikev2 decode: cannot read {path}: {error}", file=sys.stderr)
        return 1
    decryptor = _Decryptor(keys) if keys is not None else None
    for datagram in datagrams:
        out.write(json.dumps(_datagram_to_json(datagram, decryptor)) + "\n")
    return 0
