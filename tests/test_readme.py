"""The README's example does what the README says: the handler prints its greeting on the
embedded engine, and ``durable-futures serve`` answers the ``curl`` shown next to it."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_example_prints_its_greeting_and_keeps_its_journal(tmp_path: Path) -> None:
    (code,) = python_blocks()
    (tmp_path / "greeter.py").write_text(code)
    for _ in range(2):  # and again, on the same database
        out = subprocess.run(
            [sys.executable, "greeter.py"], cwd=tmp_path, capture_output=True, text=True,
            timeout=60, check=True,
        )
        assert out.stdout.strip() == "hello user-7, visit #21"
    assert (tmp_path / "greeter.db").stat().st_size > 0


def test_serve_answers_the_curl_of_the_readme(tmp_path: Path) -> None:
    (code,) = python_blocks()
    (tmp_path / "greeter.py").write_text(code)
    text = README.read_text()
    assert "durable-futures serve greeter --port 8080" in text
    assert "curl localhost:8080/Greeter/greet --json 7" in text
    port, admin = free_port(), free_port()
    cli = Path(sys.executable).with_name("durable-futures")
    proc = subprocess.Popen(
        [str(cli), "serve", "greeter", "--port", str(port), "--admin-port", str(admin)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/Greeter/greet", data=b"7",
                    headers={"content-type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=10) as resp:
                    assert json.loads(resp.read()) == "hello user-7, visit #21"
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1].decode()
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
