"""Small helpers shared by test modules (tests/ is on sys.path: pytest's default prepend import mode)."""

from pathlib import Path


def flip_bit(path: Path, offset: int = -100) -> None:
    """Flip the lowest bit of the byte at ``offset`` of ``path``: the smallest damage a digest must catch."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
