"""Small malformed files that make Pillow's own readers raise exceptions other than the ones it
documents (TypeError, NotImplementedError, AttributeError), kept as fixtures: the server must
refuse each with a 400 naming ``image``, never crash a task or answer 500.

Built in code, each a few hundred bytes; ``test_reliability`` checks that the installed Pillow,
opening them with every reader, still raises what is written here (so the fixtures stay hostile).
"""

from __future__ import annotations

import struct


def im_with_fractional_size() -> bytes:
    """IFUNC IM header whose size is 4.5*4: the IM reader stores a float width (TypeError on load)."""
    header = b"Image type: L image\r\nImage size (x*y): 4.5*4\r\n\x1a"
    return header.ljust(600, b"\x00")


def dds_without_pixel_format() -> bytes:
    """A DDS header with no pixel-format flags: the DDS reader raises NotImplementedError."""
    header = struct.pack("<I", 124) + struct.pack("<3I", 0, 4, 4) + b"\x00" * (120 - 12)
    return b"DDS " + header


def spider_inconsistent_stack() -> bytes:
    """A SPIDER header with istack 0 and an image number: the reader reads an attribute it never
    set (AttributeError)."""
    values = [0.0] * 27
    values[0] = 1  # slices
    values[1] = 4  # rows
    values[4] = 1  # iform: 2D image
    values[11] = 4  # columns
    values[12] = 1  # header records
    values[21] = 108  # header bytes
    values[22] = 108  # record length
    values[26] = 1  # image number, with istack (values[23]) 0
    return struct.pack(">27f", *values).ljust(200, b"\x00")


# name -> (bytes, the exception Pillow raises opening them with all its readers)
PILLOW_CRASHERS: dict[str, tuple[bytes, type[BaseException]]] = {
    "im": (im_with_fractional_size(), TypeError),
    "dds": (dds_without_pixel_format(), NotImplementedError),
    "spider": (spider_inconsistent_stack(), AttributeError),
}
