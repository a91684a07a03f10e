"""Build of ``framecrypt._native``, the compiled hot loop (everything else is in
pyproject.toml).

The extension links the system libcrypto (Debian ``libssl-dev``) and, on x86-64
where its header is installed, Intel's multi-buffer crypto library (Debian
``libipsec-mb-dev``); ``make install`` installs both with apt where missing. A
machine without a C compiler or headers still installs framecrypt: the build
is optional (``FRAMECRYPT_REQUIRE_NATIVE=1`` makes it mandatory, as ``make`` and
CI do) and the pure-Python core runs. ``FRAMECRYPT_SANITIZE=1`` builds with
AddressSanitizer and UBSan (CI's sanitizer pass).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SRC = Path("workers/csrc")
IPSEC_MB_HEADER = Path("/usr/include/intel-ipsec-mb.h")


def _extension() -> Extension:
    macros: list[tuple[str, str | None]] = []
    libraries = ["crypto"]
    if platform.machine() in ("x86_64", "AMD64") and IPSEC_MB_HEADER.exists():
        macros.append(("FC_HAVE_IPSECMB", "1"))
        libraries.append("IPSec_MB")
    cflags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers",
              "-fvisibility=hidden"]
    ldflags: list[str] = []
    if os.environ.get("FRAMECRYPT_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
               "-fno-omit-frame-pointer", "-g", "-O1"]
        cflags += san
        ldflags += san
        macros.append(("FC_SANITIZED", "1"))
    return Extension(
        "framecrypt._native",
        sources=[str(p) for p in sorted(SRC.glob("*.c"))],
        depends=[str(p) for p in sorted(SRC.glob("*.[hi]*"))],
        define_macros=macros,
        libraries=libraries,
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )


class OptionalBuildExt(build_ext):
    """Build the extension; without a compiler or headers, say so and go on (the
    pure-Python core runs) unless FRAMECRYPT_REQUIRE_NATIVE=1."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:
            if os.environ.get("FRAMECRYPT_REQUIRE_NATIVE") == "1":
                raise
            print(f"framecrypt: native extension not built ({e}); the pure-Python core "
                  "will run", file=sys.stderr)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:
            if os.environ.get("FRAMECRYPT_REQUIRE_NATIVE") == "1":
                raise
            print(f"framecrypt: native extension not built ({e}); the pure-Python core "
                  "will run", file=sys.stderr)


setup(ext_modules=[_extension()], cmdclass={"build_ext": OptionalBuildExt})
