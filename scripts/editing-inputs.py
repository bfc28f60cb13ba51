#!/usr/bin/env python3
"""usage: scripts/editing-inputs.py MNIST_DIR OUT_DIR [N]

Inputs for trying `ddpm inpaint` and `ddpm sample --init` on MNIST (docs/editing.md): the first N (default 10) test
digits as OUT_DIR/digits/000.png …, and 28×28 masks (white = keep) OUT_DIR/keep-top.png and OUT_DIR/keep-left.png.
Standard library only: the IDX file is read as bytes and the PNGs written as 8-bit grayscale.
"""
import os
import struct
import sys
import zlib


def write_png(path, rows):
    """An 8-bit grayscale PNG of `rows` (a list of equally long byte strings)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + bytes(r) for r in rows))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.splitlines()[0])
    mnist, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) == 4 else 10
    with open(os.path.join(mnist, "t10k-images-idx3-ubyte"), "rb") as f:
        data = f.read()
    magic, count, height, width = struct.unpack(">IIII", data[:16])
    if magic != 0x803 or (height, width) != (28, 28):
        sys.exit(f"error: {mnist}/t10k-images-idx3-ubyte is not MNIST's test images (magic {magic:#x}, {height}×{width})")
    os.makedirs(os.path.join(out, "digits"), exist_ok=True)
    for i in range(min(n, count)):
        start = 16 + i * 784
        write_png(os.path.join(out, "digits", f"{i:03d}.png"), [data[start + 28 * y:start + 28 * y + 28] for y in range(28)])
    write_png(os.path.join(out, "keep-top.png"), [bytes([255 if y < 14 else 0] * 28) for y in range(28)])
    write_png(os.path.join(out, "keep-left.png"), [bytes([255] * 14 + [0] * 14) for _ in range(28)])
    print(os.path.join(out, "digits"))


if __name__ == "__main__":
    main()
