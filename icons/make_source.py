"""Draws icons/source.png, the one image every app icon is generated from
(`npx tauri icon icons/source.png`): a friendly face on an amber rounded square.
Pure Python (zlib only), so it needs nothing installed."""
import math
import struct
import zlib

N = 1024
AMBER = (255, 176, 32, 255)
INK = (26, 18, 0, 255)


def inside_rounded(x, y, lo=64, hi=960, r=220):
    cx = min(max(x, lo + r), hi - r)
    cy = min(max(y, lo + r), hi - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r and lo <= x <= hi and lo <= y <= hi


def pixel(x, y):
    if not inside_rounded(x, y):
        return (0, 0, 0, 0)
    for ex in (370, 654):
        if (x - ex) ** 2 + (y - 440) ** 2 <= 62 ** 2:
            return INK
    # Smile: a ring segment below the eyes.
    d = math.hypot(x - 512, y - 560)
    if 150 <= d <= 205 and y > 600:
        return INK
    return AMBER


def png(path):
    rows = b"".join(
        b"\x00" + b"".join(struct.pack("4B", *pixel(x, y)) for x in range(N)) for y in range(N)
    )
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", N, N, 8, 6, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(rows, 9)))
        f.write(chunk(b"IEND", b""))


if __name__ == "__main__":
    png("icons/source.png")
