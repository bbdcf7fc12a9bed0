"""construct declarations of the IKEv2 header and payload bodies (RFC 7296 §3, RFC 7383 §2.5).

Every declaration covers a whole payload *including* its 4-byte generic payload header, so the
variable parts can be sized from the payload's own length (`Bytes(this.length - N)`), the lean form
that `.compile()` turns into straight-line code (DESIGN §4). Reserved fields are `Padding`: sent as
zero, ignored on receipt.

Only `ikev2.wire` may use these: construct Containers never leave the package. Compiled schemas
trust their input (an overrunning length parses silently), so `codec` hands them only slices whose
lengths `checks` has already verified with plain struct.

The compiled versions are built once, at import, and kept in `COMPILED` under the same names as the
interpreted ones in `SCHEMAS`; tests run the round trips against both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from io import BytesIO
from typing import Any, Final, NamedTuple

from construct import Array, Bytes, Container, If, Int8ub, Int16ub, Int32ub, Padding, Struct, this

# RFC 7296 §3.1, Figure 4: IKE Header Format
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                       IKE SA Initiator's SPI                  |
# |                                                               |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                       IKE SA Responder's SPI                  |
# |                                                               |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                          Message ID                           |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                            Length                             |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# (the hot path reads it with plain struct in chain.py; this declaration is checked against it)
IKE_HEADER = Struct(
    "spi_i" / Bytes(8),
    "spi_r" / Bytes(8),
    "next_payload" / Int8ub,
    "version" / Int8ub,
    "exchange" / Int8ub,
    "flags" / Int8ub,
    "message_id" / Int32ub,
    "length" / Int32ub,
)

# RFC 7296 §3.2, Figure 5: Generic Payload Header
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# `flags` holds the critical bit (0x80) and the reserved bits together.
_GENERIC = ("next_payload" / Int8ub, "flags" / Int8ub, "length" / Int16ub)

GENERIC_PAYLOAD = Struct(*_GENERIC, "body" / Bytes(this.length - 4))

# RFC 7296 §3.3: Security Association Payload; the body is a list of Proposal substructures,
# walked and bounds-checked by checks.proposal_bounds before each is parsed.
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                          <Proposals>                          ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
SA_PAYLOAD = Struct(*_GENERIC, "proposals" / Bytes(this.length - 4))

# RFC 7296 §3.3.5, Figure 9: Data Attributes. AF (bit 0x8000 of af_type) set: TV format, the value
# is the second 16-bit word; clear: TLV format, that word is the length of the value that follows.
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |A|       Attribute Type        |    AF=0  Attribute Length     |
# |F|                             |    AF=1  Attribute Value      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                   AF=0  Attribute Value                       |
# |                   AF=1  Not Transmitted                       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
TRANSFORM_ATTRIBUTE = Struct(
    "af_type" / Int16ub,
    "length_or_value" / Int16ub,
    "value" / If(this.af_type < 0x8000, Bytes(this.length_or_value)),
)

# RFC 7296 §3.3.2, Figure 8: Transform Substructure
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Last Substruc |   RESERVED    |        Transform Length       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |Transform Type |   RESERVED    |          Transform ID         |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                      Transform Attributes                     ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
TRANSFORM = Struct(
    "last" / Int8ub,
    Padding(1),
    "length" / Int16ub,
    "type" / Int8ub,
    Padding(1),
    "id" / Int16ub,
    "attributes" / Bytes(this.length - 8),
)

# RFC 7296 §3.3.1, Figure 7: Proposal Substructure
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Last Substruc |   RESERVED    |         Proposal Length       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                        SPI (variable)                         ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                        <Transforms>                           ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
PROPOSAL = Struct(
    "last" / Int8ub,
    Padding(1),
    "length" / Int16ub,
    "number" / Int8ub,
    "protocol" / Int8ub,
    "spi_size" / Int8ub,
    "num_transforms" / Int8ub,
    "spi" / Bytes(this.spi_size),
    "transforms" / Array(this.num_transforms, TRANSFORM),
)

# RFC 7296 §3.4, Figure 10: Key Exchange Payload Format
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   Diffie-Hellman Group Num    |           RESERVED            |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                       Key Exchange Data                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
KE_PAYLOAD = Struct(*_GENERIC, "group" / Int16ub, Padding(2), "data" / Bytes(this.length - 8))

# RFC 7296 §3.5, Figure 11: Identification Payload Format (IDi and IDr)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   ID Type     |                 RESERVED                      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                   Identification Data                         ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
ID_PAYLOAD = Struct(*_GENERIC, "id_type" / Int8ub, Padding(3), "data" / Bytes(this.length - 8))

# RFC 7296 §3.6, Figure 12: Certificate Payload Format; §3.7, Figure 13: Certificate Request
# Payload Format (same layout: Cert Encoding, then Certificate Data / Certification Authority)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Cert Encoding |                                               |
# +-+-+-+-+-+-+-+-+                                               |
# ~                       Certificate Data                        ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
CERT_PAYLOAD = Struct(*_GENERIC, "encoding" / Int8ub, "data" / Bytes(this.length - 5))

# RFC 7296 §3.8, Figure 14: Authentication Payload Format
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Auth Method   |                RESERVED                       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                      Authentication Data                      ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
AUTH_PAYLOAD = Struct(*_GENERIC, "method" / Int8ub, Padding(3), "data" / Bytes(this.length - 8))

# RFC 7296 §3.9, Figure 15: Nonce Payload Format; §3.12, Figure 18: Vendor ID Payload Format;
# §3.16, Figure 24: EAP Payload Format (all: generic header, then opaque data)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~            Nonce Data / Vendor ID / EAP Message               ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
DATA_PAYLOAD = Struct(*_GENERIC, "data" / Bytes(this.length - 4))

# RFC 7296 §3.10, Figure 16: Notify Payload Format
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |  Protocol ID  |   SPI Size    |      Notify Message Type      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                Security Parameter Index (SPI)                 ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                       Notification Data                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
NOTIFY_PAYLOAD = Struct(
    *_GENERIC,
    "protocol" / Int8ub,
    "spi_size" / Int8ub,
    "notify_type" / Int16ub,
    "spi" / Bytes(this.spi_size),
    "data" / Bytes(this.length - 8 - this.spi_size),
)

# RFC 7296 §3.11, Figure 17: Delete Payload Format
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Protocol ID   |   SPI Size    |          Num of SPIs          |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~               Security Parameter Index(es) (SPI)              ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
DELETE_PAYLOAD = Struct(
    *_GENERIC,
    "protocol" / Int8ub,
    "spi_size" / Int8ub,
    "num_spis" / Int16ub,
    "spis" / Array(this.num_spis, Bytes(this.spi_size)),
)

# RFC 7296 §3.13, Figure 19: Traffic Selectors Payload Format; the selectors are walked and
# bounds-checked by checks.selector_bounds before each is parsed.
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Number of TSs |                 RESERVED                      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                       <Traffic Selectors>                     ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
TS_PAYLOAD = Struct(*_GENERIC, "num_ts" / Int8ub, Padding(3), "selectors" / Bytes(this.length - 8))

# RFC 7296 §3.13.1, Figure 20: Traffic Selector, for TS_IPV4_ADDR_RANGE (16 octets) and
# TS_IPV6_ADDR_RANGE (40 octets)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   TS Type     |IP Protocol ID*|       Selector Length         |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |           Start Port*         |           End Port*           |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                         Starting Address*                     ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                         Ending Address*                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
_TS_COMMON = (
    "ts_type" / Int8ub,
    "ip_protocol" / Int8ub,
    "length" / Int16ub,
    "start_port" / Int16ub,
    "end_port" / Int16ub,
)
TS_IPV4 = Struct(*_TS_COMMON, "start_addr" / Bytes(4), "end_addr" / Bytes(4))
TS_IPV6 = Struct(*_TS_COMMON, "start_addr" / Bytes(16), "end_addr" / Bytes(16))
# A selector of a type we do not know (FC, security label...): type, length, opaque rest.
TS_RAW = Struct("ts_type" / Int8ub, Padding(1), "length" / Int16ub, "data" / Bytes(this.length - 4))

# RFC 7296 §3.14, Figure 21: Encrypted Payload Format (SK); Next Payload is the type of the first
# payload inside. IV, ciphertext, padding and ICV are opaque to wire/.
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                     Initialization Vector                     |
# ~                    Encrypted IKE Payloads                     ~
# |               |             Padding (0-255 octets)            |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                    Integrity Checksum Data                    ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
SK_PAYLOAD = Struct(*_GENERIC, "body" / Bytes(this.length - 4))

# RFC 7383 §2.5, Figure 2: Encrypted Fragment Payload (SKF)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |        Fragment Number        |        Total Fragments        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                     Initialization Vector                     |
# ~                      Encrypted content                        ~
# ~                    Integrity Checksum Data                    ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
SKF_PAYLOAD = Struct(
    *_GENERIC,
    "fragment_number" / Int16ub,
    "total_fragments" / Int16ub,
    "body" / Bytes(this.length - 8),
)

# RFC 7296 §3.15, Figure 22: Configuration Payload Format
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C| RESERVED    |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   CFG Type    |                    RESERVED                   |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                   Configuration Attributes                    ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
CP_PAYLOAD = Struct(
    *_GENERIC, "cfg_type" / Int8ub, Padding(3), "attributes" / Bytes(this.length - 8)
)

# RFC 7296 §3.15.1, Figure 23: Configuration Attribute Format (R: reserved bit, in attr_type)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |R|         Attribute Type      |            Length             |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                             Value                             ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
CFG_ATTRIBUTE = Struct("attr_type" / Int16ub, "length" / Int16ub, "value" / Bytes(this.length))

SCHEMAS: Final[dict[str, Any]] = {
    "IKE_HEADER": IKE_HEADER,
    "GENERIC_PAYLOAD": GENERIC_PAYLOAD,
    "SA_PAYLOAD": SA_PAYLOAD,
    "PROPOSAL": PROPOSAL,
    "TRANSFORM": TRANSFORM,
    "TRANSFORM_ATTRIBUTE": TRANSFORM_ATTRIBUTE,
    "KE_PAYLOAD": KE_PAYLOAD,
    "ID_PAYLOAD": ID_PAYLOAD,
    "CERT_PAYLOAD": CERT_PAYLOAD,
    "AUTH_PAYLOAD": AUTH_PAYLOAD,
    "DATA_PAYLOAD": DATA_PAYLOAD,
    "NOTIFY_PAYLOAD": NOTIFY_PAYLOAD,
    "DELETE_PAYLOAD": DELETE_PAYLOAD,
    "TS_PAYLOAD": TS_PAYLOAD,
    "TS_IPV4": TS_IPV4,
    "TS_IPV6": TS_IPV6,
    "TS_RAW": TS_RAW,
    "SK_PAYLOAD": SK_PAYLOAD,
    "SKF_PAYLOAD": SKF_PAYLOAD,
    "CP_PAYLOAD": CP_PAYLOAD,
    "CFG_ATTRIBUTE": CFG_ATTRIBUTE,
}

# Compiled once at import.
COMPILED: Final[dict[str, Any]] = {name: schema.compile() for name, schema in SCHEMAS.items()}

Parser = Callable[[bytes], Any]
Builder = Callable[[Mapping[str, Any]], bytes]

# The context a compiled parser or builder reads from its caller (it writes only to the
# per-struct contexts it makes). Shared: compiled code never mutates it.
_ROOT_CONTEXT: Final = Container(_params=Container(), _root=None, _index=None)


def _compiled_parser(compiled: Any) -> Parser:
    """Call the generated parse function directly: Construct.parse adds ~1 µs of context and
    error-path bookkeeping per call, and we map every exception ourselves (message.py).
    Relies on construct 2.10.70's Compiled.parsefunc (the version is pinned in pyproject)."""
    parse = compiled.parsefunc

    def run(data: bytes) -> Any:
        return parse(BytesIO(data), _ROOT_CONTEXT)

    return run


def _compiled_builder(compiled: Any) -> Builder:
    build = compiled.buildfunc

    def run(fields: Mapping[str, Any]) -> bytes:
        stream = BytesIO()
        build(fields, stream, _ROOT_CONTEXT)
        return stream.getvalue()

    return run


class SchemaSet(NamedTuple):
    """Parsers and builders by schema name, all over one kind of schema."""

    parse: dict[str, Parser]
    build: dict[str, Builder]


COMPILED_SET: Final = SchemaSet(
    {name: _compiled_parser(c) for name, c in COMPILED.items()},
    {name: _compiled_builder(c) for name, c in COMPILED.items()},
)
INTERPRETED_SET: Final = SchemaSet(
    {name: schema.parse for name, schema in SCHEMAS.items()},
    {name: schema.build for name, schema in SCHEMAS.items()},
)
