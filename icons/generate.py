#!/usr/bin/env python3
"""Draws the SyncSphere app and tray icons with ImageMagick 6 (`/usr/bin/convert`).

Run from anywhere: `python3 icons/generate.py`. The PNGs are committed, so this only needs
running when the artwork changes. Everything is drawn at 4x and scaled down for anti-aliasing.
"""

import math
import pathlib
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
CONVERT = "/usr/bin/convert"

BLUE = "#2563eb"
GREEN = "#16a34a"
GREY = "#6b7280"
RED = "#dc2626"
WHITE = "#ffffff"


def point(cx, cy, r, deg):
    a = math.radians(deg)
    return cx + r * math.cos(a), cy + r * math.sin(a)


def sync_arrows(cx, cy, r, width, colour):
    """Two arcs chasing each other clockwise, each ending in an arrowhead."""
    draws = []
    for start, end in ((200, 330), (20, 150)):
        # A filled band rather than a stroked arc: ImageMagick 6 closes open stroked paths.
        steps = range(start, end + 1, 2)
        outer = [point(cx, cy, r + width / 2, a) for a in steps]
        inner = [point(cx, cy, r - width / 2, a) for a in reversed(steps)]
        band = " ".join(f"{x:.1f},{y:.1f}" for x, y in outer + inner)
        draws += ["-stroke", "none", "-fill", colour, "-draw", f"polygon {band}"]
        # Arrowhead at the end of the arc, pointing along the clockwise tangent.
        tip_angle = end + 18
        tip = point(cx, cy, r, tip_angle)
        base_out = point(cx, cy, r + width * 1.1, end)
        base_in = point(cx, cy, r - width * 1.1, end)
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (tip, base_out, base_in))
        draws += ["-stroke", "none", "-fill", colour, "-draw", f"polygon {pts}"]
    return draws


def render(name, size, canvas, draws):
    out = HERE / name
    subprocess.run(
        [CONVERT, "-size", f"{canvas}x{canvas}", "xc:none", *draws,
         "-resize", f"{size}x{size}", "-strip", f"PNG32:{out}"],
        check=True,
    )
    print("wrote", out)


def app_icon():
    c = 2048
    bg = ["-fill", BLUE, "-stroke", "none", "-draw", f"roundrectangle 128,128 {c - 128},{c - 128} 384,384"]
    return bg + sync_arrows(c // 2, c // 2, 560, 176, WHITE)


def disc(colour, c=256):
    return ["-fill", colour, "-stroke", "none", "-draw", f"circle {c // 2},{c // 2} {c // 2},8"]


def tray_up_to_date():
    check = ["-fill", "none", "-stroke", WHITE, "-strokewidth", "30",
             "-draw", "stroke-linecap round stroke-linejoin round polyline 70,132 110,172 186,92"]
    return disc(GREEN) + check


def tray_syncing():
    return disc(BLUE) + sync_arrows(128, 128, 70, 24, WHITE)


def tray_offline():
    ring = ["-fill", "none", "-stroke", WHITE, "-strokewidth", "22", "-draw", "circle 128,128 128,62"]
    slash = ["-stroke", WHITE, "-strokewidth", "24",
             "-draw", "stroke-linecap round line 70,70 186,186"]
    return disc(GREY) + ring + slash


def tray_error():
    bang = ["-fill", WHITE, "-stroke", "none",
            "-draw", "roundrectangle 114,52 142,150 14,14",
            "-draw", "circle 128,190 128,207"]
    return disc(RED) + bang


def tray_paused():
    bars = ["-fill", WHITE, "-stroke", "none",
            "-draw", "roundrectangle 88,72 116,184 10,10",
            "-draw", "roundrectangle 140,72 168,184 10,10"]
    return disc(GREY) + bars


def main():
    for size, name in ((512, "icon.png"), (128, "128x128.png"), (32, "32x32.png")):
        render(name, size, 2048, app_icon())
    for name, draws in (
        ("tray-up-to-date.png", tray_up_to_date()),
        ("tray-syncing.png", tray_syncing()),
        ("tray-offline.png", tray_offline()),
        ("tray-error.png", tray_error()),
        ("tray-paused.png", tray_paused()),
    ):
        render(name, 64, 256, draws)


if __name__ == "__main__":
    main()
