"""Shared fixtures: tiny MNIST-format data sets the tests write themselves (none downloaded)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from s5 import mnist

ROOT = Path(__file__).resolve().parents[1]
# Subprocesses run from temporary folders: they find the package as a user's shell at the
# repository root would (pytest itself gets the root from pyproject.toml's pythonpath).
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

# Device-dependent tests run on each: CUDA where torch sees a GPU, skipped (with why) elsewhere.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU"))]


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images whose class (0-9) is a bright bar at a class-dependent row, + noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 4 + 2 * int(label)
        images[i, row : row + 2, 6:22] = 255
    return images, labels


def write_mnist(data_dir: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, str]:
    """Write the four raw files under <data_dir>/MNIST/raw and return their md5s."""
    raw = mnist.mnist_raw_dir(data_dir)
    train_x, train_y = synthetic_digits(n_train, seed)
    test_x, test_y = synthetic_digits(n_test, seed + 1)
    mnist.write_idx(raw / "train-images-idx3-ubyte", train_x)
    mnist.write_idx(raw / "train-labels-idx1-ubyte", train_y)
    mnist.write_idx(raw / "t10k-images-idx3-ubyte", test_x)
    mnist.write_idx(raw / "t10k-labels-idx1-ubyte", test_y)
    return {name: mnist.md5_of(raw / name) for name in mnist.MNIST_MD5}


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh 512/128-image data folder in this test's tmp_path, with its md5s."""
    data_dir = tmp_path / "data"
    return data_dir, write_mnist(data_dir, 512, 128)


@pytest.fixture(scope="session")
def cli_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1,024/256-image data folder shared by the command-line tests (read only): 16 steps of
    batch 64 an epoch."""
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    write_mnist(data_dir, 1024, 256)
    return data_dir


def interrupt_when_logged(cmd: list[str], cwd: Path, log_dir: Path,
                          marker: str) -> subprocess.CompletedProcess:
    """Run ``cmd``, send Ctrl-C (SIGINT) once its run log in ``log_dir`` shows ``marker``, and
    wait for it to exit."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        logs = list(log_dir.glob("*.log"))
        if logs and marker in logs[0].read_text():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    output = proc.communicate(timeout=300)[0]
    return subprocess.CompletedProcess(cmd, proc.returncode, output, "")


def stop_after(steps: int) -> Callable[[], AbstractContextManager[Callable[[], bool]]]:
    """A stand-in for ``training.stop_on_signals``: the run is asked to stop after ``steps`` steps,
    as by one Ctrl-C."""
    calls: list[int] = []

    @contextmanager
    def stop_on_signals() -> Iterator[Callable[[], bool]]:
        yield lambda: calls.append(1) or len(calls) >= steps

    return stop_on_signals


def cli_run(argv: list[str]) -> tuple[int, object]:
    """train.py's command line in this process, as ``main`` runs it: (exit status, run files)."""
    from s5 import train_cli

    result = train_cli.run(argv)
    return train_cli.outcome(result), result.files


PASSWORD = "s3cret-pw"  # the test server's: it must never be recorded, rendered or printed


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL server (Debian's package) on a free local port, with a password: its URL in
    the README's form (postgresql://USER:PASSWORD@HOST/DB); stopped and removed afterwards."""
    # SQLAlchemy 2.1 reads postgresql:// as psycopg (3): the driver requirements-tune.txt names
    pytest.importorskip("psycopg", reason="PostgreSQL's driver is in requirements-tune.txt")
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    if not found[-1]:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)")
    bin_dir = Path(found[-1]).parent
    # the server refuses to run as root, and its user reads the folder: outside pytest's tmp
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="s5-pg-"))
    folder.chmod(0o755)
    (folder / "pw").write_text(PASSWORD)
    if as_user:
        shutil.chown(folder, "postgres")
        shutil.chown(folder / "pw", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "pg"
    try:
        subprocess.run([*as_user, bin_dir / "initdb", "-D", data, "-U", "postgres",
                        "--auth=scram-sha-256", f"--pwfile={folder / 'pw'}"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-w", "-l", folder / "pg.log",
                        "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True, timeout=120)
        yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "fast", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
