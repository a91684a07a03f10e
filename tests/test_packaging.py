"""One import name: the wheel installs only ``framecrypt`` (``framecrypt.broker``, …),
never top-level ``broker``/``workers`` modules; the editable install maps the same."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_FOLDERS = ("broker", "workers", "transports", "conf")


@pytest.mark.slow
def test_wheel_installs_under_one_name(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
         str(ROOT)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = out.glob("framecrypt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"framecrypt", "-".join(wheel.name.split("-")[:2]) + ".dist-info"}, tops
    # the compiled hot loop is built by the normal wheel build (setup.py)
    assert [n for n in names if n.startswith("framecrypt/_native.") and n.endswith(".so")], \
        "the wheel has no framecrypt._native extension"
    assert not [n for n in names if "/csrc/" in n], "C sources leaked into the wheel"
    for folder in TOP_FOLDERS:
        assert f"framecrypt/{folder}/__init__.py" in names
    assert "framecrypt/workers/sframe/__init__.py" in names
    assert "framecrypt/workers/livekit/frame.py" in names

    # a clean venv with only the wheel; dependencies come from this venv's site-packages
    # appended *after* (plain sys.path entry: its editable-install .pth is not run)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    deps = sysconfig.get_paths()["purelib"]
    probe = (
        f"import sys, importlib.util as u; sys.path.append({deps!r});"
        "import framecrypt, framecrypt.broker, framecrypt.workers, framecrypt.transports,"
        " framecrypt.conf, framecrypt.sframe, framecrypt.livekit;"
        "print(framecrypt.__file__);"
        f"print([m for m in {TOP_FOLDERS!r} if u.find_spec(m) is not None]);"
        "from framecrypt.workers.native import info; print(info()['path'])"
    )
    # (the installed wheel's own extension: not the switch or the sanitizer build of
    # the run around this test)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "FRAMECRYPT_NATIVE", "FRAMECRYPT_NATIVE_LIB", "LD_PRELOAD")}
    res = subprocess.run([py, "-c", probe], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env=env, check=True)
    where, leaked, path = res.stdout.strip().splitlines()
    assert str(env_dir) in where
    assert leaked == "[]"
    assert path == "native"


def test_editable_install_maps_folders() -> None:
    import framecrypt.broker
    import framecrypt.workers
    import framecrypt.workers.livekit

    assert Path(framecrypt.workers.__file__).parent == ROOT / "workers"
    assert Path(framecrypt.broker.__file__).parent == ROOT / "broker"
    assert Path(framecrypt.workers.livekit.__file__).parent == ROOT / "workers" / "livekit"


def test_every_package_folder_is_listed_in_pyproject() -> None:
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for pkg, folder in cfg["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "node_modules" in rel.parts or "tests" in rel.parts:
                continue
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    assert found <= listed, f"missing from pyproject packages: {sorted(found - listed)}"
