"""The capture reader: the reference pcapng, synthetic pcap files of every supported link type
and encapsulation, and hex dumps."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ikev2.tools.capture import CaptureError, read_datagrams

CAPTURES = Path(__file__).resolve().parents[2] / "fixtures" / "captures"
IKE = bytes(range(40))  # the reader does not look inside the UDP payload
MARKER = bytes(4)


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(segment: bytes, src: bytes = bytes([10, 0, 0, 1]), dst: bytes = bytes([10, 0, 0, 2]),
         fragment: int = 0) -> bytes:  # fmt: skip
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 1, fragment, 64, 17, 0,
                       src, dst) + segment  # fmt: skip


def ipv6(segment: bytes) -> bytes:
    src, dst = bytes(15) + b"\x01", bytes(15) + b"\x02"
    return struct.pack(">IHBB16s16s", 0x60000000, len(segment), 17, 64, src, dst) + segment


def ethernet(packet: bytes, vlan: bool = False) -> bytes:
    ethertype = 0x86DD if packet[0] >> 4 == 6 else 0x0800
    tag = struct.pack(">HH", 0x8100, 7) if vlan else b""
    return bytes(12) + tag + struct.pack(">H", ethertype) + packet


def pcap(
    link_type: int, frames: list[bytes], big_endian: bool = False, nano: bool = False
) -> bytes:
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, link_type)
    for index, frame in enumerate(frames):
        out += struct.pack(order + "IIII", 1000 + index, 500, len(frame), len(frame)) + frame
    return out


def read(tmp_path: Path, data: bytes, name: str = "capture") -> list:  # type: ignore[type-arg]
    path = tmp_path / name
    path.write_bytes(data)
    return list(read_datagrams(path))


def test_reference_pcapng(tmp_path: Path) -> None:
    datagrams = list(read_datagrams(CAPTURES / "ikev2-reference.pcapng"))
    assert [d.frame for d in datagrams] == [*range(1, 7), *range(13, 53)]
    first, third = datagrams[0], datagrams[2]
    assert (first.src, first.sport, first.dst, first.dport) == ("10.99.0.1", 500, "10.99.0.2", 500)
    assert len(first.payload) == 232 and first.payload[:8].hex() == "9c82f7e8e9024c09"
    assert (third.sport, third.dport, len(third.payload)) == (4500, 4500, 320)  # marker stripped
    assert third.payload[:8] == first.payload[:8]
    assert datagrams[1].timestamp - first.timestamp == pytest.approx(
        0.005918123, abs=1e-6
    )  # float64 at epoch scale
    hex_lines = (CAPTURES / "ikev2-reference.hex").read_text().split()
    assert [d.payload.hex() for d in datagrams] == hex_lines


def test_nat_t_marker_esp_and_keepalive(tmp_path: Path) -> None:
    frames = [
        ethernet(ipv4(udp(500, 500, IKE))),
        ethernet(ipv4(udp(4500, 4500, MARKER + IKE))),
        ethernet(ipv4(udp(4500, 4500, b"\x77\x23\x43\x52" + bytes(40)))),  # ESP
        ethernet(ipv4(udp(4500, 4500, b"\xff"))),  # NAT-keepalive
        ethernet(ipv4(udp(53, 53, IKE))),  # other port
        ethernet(ipv4(udp(500, 500, IKE), fragment=0x2000)),  # a fragment
        ethernet(ipv6(udp(500, 4500, MARKER + IKE)), vlan=True),  # port 500 wins: no stripping
    ]
    datagrams = read(tmp_path, pcap(1, frames))
    assert [d.frame for d in datagrams] == [1, 2, 7]
    assert datagrams[0].payload == IKE and datagrams[1].payload == IKE
    assert datagrams[2].payload == MARKER + IKE and datagrams[2].src == "::1"
    assert datagrams[0].timestamp == pytest.approx(1000.0005)


@pytest.mark.parametrize(
    ("link_type", "wrap"),
    [
        (113, lambda p: bytes(14) + b"\x08\x00" + p),  # Linux cooked (SLL)
        (276, lambda p: b"\x08\x00" + bytes(18) + p),  # SLL2
        (101, lambda p: p),  # raw IP
        (228, lambda p: p),  # raw IPv4
        (0, lambda p: b"\x02\x00\x00\x00" + p),  # BSD loopback
    ],
)
def test_link_types(tmp_path: Path, link_type: int, wrap) -> None:  # type: ignore[no-untyped-def]
    frame = wrap(ipv4(udp(4500, 4500, MARKER + IKE)))
    for big_endian, nano in ((False, False), (True, True)):
        (datagram,) = read(tmp_path, pcap(link_type, [frame], big_endian, nano))
        assert datagram.payload == IKE and datagram.dst == "10.0.0.2"


def test_truncated_pcap_is_an_error(tmp_path: Path) -> None:
    data = pcap(1, [ethernet(ipv4(udp(500, 500, IKE)))])
    with pytest.raises(CaptureError, match="truncated"):
        read(tmp_path, data[:-5])


def test_hex_one_message_per_line(tmp_path: Path) -> None:
    text = "# two messages\n" + IKE.hex() + "\n" + IKE[:10].hex(":").upper() + "\n"
    datagrams = read(tmp_path, text.encode())
    assert [(d.frame, d.payload) for d in datagrams] == [(1, IKE), (2, IKE[:10])]
    assert datagrams[0].src is None and datagrams[0].timestamp is None


def test_hex_blank_line_separated_blocks(tmp_path: Path) -> None:
    block = "\n".join(f"0x{IKE[i : i + 16].hex(' ')}" for i in range(0, len(IKE), 16))
    datagrams = read(tmp_path, f"{block}\n\n\n{block}\n".encode())
    assert [d.payload for d in datagrams] == [IKE, IKE]


def test_hex_errors_are_per_message(tmp_path: Path) -> None:
    datagrams = read(tmp_path, f"{IKE.hex()}\nzz00\nabc\n".encode())
    assert datagrams[0].error is None
    assert datagrams[1].error is not None and "invalid hex digit 'z'" in datagrams[1].error
    assert datagrams[2].error is not None and "odd number" in datagrams[2].error


def test_binary_garbage_is_not_a_capture(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="not a pcap"):
        read(tmp_path, b"\x00\xff\xfe garbage")
