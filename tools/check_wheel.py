"""Checks the release artefacts in a directory (``make wheel``): every Linux wheel is
``manylinux_2_17`` or older as ``auditwheel show`` sees it, its extension carries no debug
info, the metadata has the license and the version of the sources, and ``twine check
--strict`` passes on the wheels and the sdist.

    python tools/check_wheel.py DIR
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
MAX_WHEEL_BYTES = 4 * 1024 * 1024


def fail(message: str) -> None:
    print(f"check_wheel: {message}", file=sys.stderr)
    raise SystemExit(1)


def source_version() -> str:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    return str(cargo["workspace"]["package"]["version"])


def elf_sections(data: bytes) -> list[str]:
    """The section names of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    shoff = int.from_bytes(data[0x28:0x30], "little")
    shentsize = int.from_bytes(data[0x3A:0x3C], "little")
    shnum = int.from_bytes(data[0x3C:0x3E], "little")
    shstrndx = int.from_bytes(data[0x3E:0x40], "little")

    def header(i: int) -> tuple[int, int, int]:
        h = data[shoff + i * shentsize : shoff + (i + 1) * shentsize]
        name = int.from_bytes(h[0:4], "little")
        offset = int.from_bytes(h[0x18:0x20], "little")
        size = int.from_bytes(h[0x20:0x28], "little")
        return name, offset, size

    _, str_off, str_size = header(shstrndx)
    strtab = data[str_off : str_off + str_size]
    names = []
    for i in range(shnum):
        name = header(i)[0]
        names.append(strtab[name : strtab.index(b"\0", name)].decode())
    return names


def check_wheel(path: Path, version: str) -> None:
    if path.stat().st_size > MAX_WHEEL_BYTES:
        fail(f"{path.name} is {path.stat().st_size} bytes (debug info left in?)")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        meta_name = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        if meta_name is None:
            fail(f"{path.name} has no METADATA")
        meta = z.read(meta_name).decode()
        for so in (n for n in names if n.endswith(".so")):
            debug = [n for n in elf_sections(z.read(so)) if n.startswith(".debug")]
            if debug:
                fail(f"{path.name}: {so} carries debug sections {debug}")
    if f"\nVersion: {version}\n" not in meta:
        fail(f"{path.name}: metadata version differs from Cargo.toml's {version}")
    if "License-Expression: MIT" not in meta or "License-File: LICENSE" not in meta:
        fail(f"{path.name}: metadata lacks License-Expression / License-File")
    if "linux" in path.name:
        out = subprocess.run(
            [sys.executable, "-m", "auditwheel", "show", str(path)],
            capture_output=True, text=True, check=True,
        ).stdout
        m = re.search(r'"manylinux_2_(\d+)_\w+"', out)
        if m is None or int(m.group(1)) > 17:
            fail(f"{path.name}: auditwheel says it needs a newer glibc than 2.17:\n{out}")
        print(f"{path.name}: manylinux_2_{m.group(1)}, {path.stat().st_size / 2**20:.1f} MiB")


def main() -> None:
    directory = Path(sys.argv[1])
    wheels = sorted(directory.glob("*.whl"))
    sdists = sorted(directory.glob("*.tar.gz"))
    if not wheels or not sdists:
        fail(f"expected wheels and an sdist in {directory}")
    version = source_version()
    for w in wheels:
        check_wheel(w, version)
    subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)],
        check=True,
    )


if __name__ == "__main__":
    main()
