# Raw HTTP/2 bytes for tests: frames built and taken apart by hand, literal HPACK; stdlib only.
# SPDX-License-Identifier: MIT
"""Shared by the integration, security and fuzz-seed scripts that speak
HTTP/2 below any library: a test must be able to send what no correct
library would, and to read what came back frame by frame. Header blocks are
literal fields (no tables, no Huffman), which every decoder must accept."""

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload=b""):
    """One frame; nothing checked, the reserved bit of sid cleared."""
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + \
        (sid & 0x7FFFFFFF).to_bytes(4, "big") + payload


def take_frame(buf):
    """((type, flags, stream id, payload), rest) for the first whole frame in
    buf, or (None, buf) while it is incomplete."""
    if len(buf) < 9:
        return None, buf
    n = int.from_bytes(buf[:3], "big")
    if len(buf) < 9 + n:
        return None, buf
    sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
    return (buf[3], buf[4], sid, buf[9:9 + n]), buf[9 + n:]


def split_frames(buf):
    """([(type, flags, stream id, payload)...], rest): every whole frame."""
    out = []
    while True:
        f, buf = take_frame(buf)
        if f is None:
            return out, buf
        out.append(f)


def hpack_int(n, prefix):
    """An HPACK integer with a prefix of that many bits (RFC 7541 5.1)."""
    top = (1 << prefix) - 1
    if n < top:
        return bytes([n])
    out = [top]
    n -= top
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def hpack_str(b):
    """An HPACK string literal without Huffman, any length (RFC 7541 5.2)."""
    return hpack_int(len(b), 7) + b


def hpack_indexed(index, value):
    """Literal header field without indexing whose name is static-table entry
    index (below 15), value str or bytes (RFC 7541 6.2.2)."""
    assert 0 <= index < 15
    return bytes([index]) + hpack_str(value.encode() if isinstance(value, str) else value)


def hpack_new(name, value):
    """Literal header field without indexing, new name (RFC 7541 6.2.2)."""
    return b"\x00" + hpack_str(name.encode()) + hpack_str(value.encode())


def hpack_block(headers):
    """A header block of (name, value) pairs, each a hpack_new() field."""
    return b"".join(hpack_new(k, v) for k, v in headers)
