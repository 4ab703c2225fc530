"""The wheel installs like a library: built, installed (not editable) into a fresh virtual
environment, then used from outside the checkout: `ranksearch validate` on a shipped space and
`ranksearch dashboard` serving its page and assets over HTTP.

The fresh environment reuses this interpreter's installed dependencies through a .pth file
(found at test time from `site`), so nothing is downloaded; the wheel goes in with --no-deps.
"""

from __future__ import annotations

import os
import signal
import site
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from ranksearch.bench.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # A copy of the checkout keeps build/ and *.egg-info out of the working tree.
    _copy_tree(ROOT, build / "src")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(build / "src")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("ranksearch-*.whl")
    return path


def _copy_tree(src: Path, dest: Path) -> None:
    """The files a build reads: the package (symlinks followed), the top-level data, metadata."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("ranksearch", "dashboards", "search_spaces"):
        shutil.copytree(src / name, dest / name, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(src / name, dest / name)


def test_wheel_carries_the_dashboard_and_the_shipped_spaces(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("index.html", "app.js", "style.css"):
        assert f"ranksearch/_data/dashboards/{asset}" in names
    shipped = {p.name for p in (ROOT / "search_spaces").glob("*.yaml")}
    assert shipped and {f"ranksearch/_data/search_spaces/{n}" for n in shipped} <= names
    with zipfile.ZipFile(wheel) as z:  # real files, not links
        assert z.read("ranksearch/_data/dashboards/index.html") == (ROOT / "dashboards" / "index.html").read_bytes()


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies of this environment, but not its (editable) ranksearch.
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "_ranksearch_test_deps.pth").write_text("\n".join(deps) + "\n")
    proc = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env_dir


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(("MLFLOW_", "RAY_"))}
    env["HOME"] = str(tmp)
    return env


def test_installed_package_is_the_wheel_not_the_checkout(venv, tmp_path):
    py = venv / "bin" / "python"
    out = subprocess.run([str(py), "-c", "import ranksearch, ranksearch.resources as r; "
                          "print(ranksearch.__file__); print(r.dashboard_dir()); print(r.shipped_spaces_dir())"],
                         cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert all(str(venv) in line and str(ROOT) not in line for line in lines), lines
    assert (Path(lines[1]) / "index.html").is_file() and (Path(lines[2]) / "quickstart_digits.yaml").is_file()


def test_validate_a_shipped_space_from_outside_the_checkout(venv, tmp_path):
    exe = venv / "bin" / "ranksearch"
    env = _clean_env(tmp_path)
    ok = subprocess.run([str(exe), "validate", "quickstart_digits"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=180)
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout and "quickstart_digits" in ok.stdout
    missing = subprocess.run([str(exe), "validate", "no_such_space"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=180)
    assert missing.returncode == 2 and "quickstart_digits" in missing.stderr  # lists the shipped names
    assert "Traceback" not in missing.stderr
    assert list(tmp_path.iterdir()) == []  # validate wrote nothing


def test_dashboard_serves_its_page_and_assets_from_the_wheel(venv, tmp_path):
    exe = venv / "bin" / "ranksearch"
    port = free_port()
    store = tmp_path / "store" / "mlflow.db"
    store.parent.mkdir()
    store.touch()  # the dashboard only reads: it refuses to create a store
    proc = subprocess.Popen([str(exe), "dashboard", "--host", "127.0.0.1", "--port", str(port),
                             "--tracking-uri", f"sqlite:///{store}"], cwd=tmp_path, env=_clean_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not start: {proc.stdout.read()[-2000:]}") from None
                time.sleep(0.5)
        with urllib.request.urlopen(f"{base}/", timeout=10) as r:
            page = r.read().decode()
        assert r.status == 200 and page == (ROOT / "dashboards" / "index.html").read_text()
        with urllib.request.urlopen(f"{base}/assets/app.js", timeout=10) as r:
            assert r.status == 200 and r.read() == (ROOT / "dashboards" / "app.js").read_bytes()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode is not None
