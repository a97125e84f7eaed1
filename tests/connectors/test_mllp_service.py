"""`orchestrator run --mllp-port`: the console script takes HL7 v2 beside HTTP, and stops clean."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from connectors.mllp import MllpDecoder, frame
from tests.conftest import ROOT
from tests.connectors.hl7_samples import sample
from tests.live import answers, free_port, wait_until

SCRIPT = Path(sys.executable).parent / "orchestrator"


def test_run_with_an_mllp_port_acknowledges_a_message_and_exits_0_on_sigterm(
    tmp_path: Path,
) -> None:
    http, mllp = free_port(), free_port()
    log = tmp_path / "service.log"
    command = [
        str(SCRIPT),
        "run",
        "--port",
        str(http),
        "--mllp-port",
        str(mllp),
        "--db",
        f"sqlite:///{tmp_path / 'o.db'}",
        "--flows",
        str(ROOT / "flows"),
        "--templates",
        str(ROOT / "templates"),
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=dict(os.environ), cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: process.poll() is not None or answers(f"http://127.0.0.1:{http}/healthz"),
            timeout=60,
            what="the service's health check",
        )
        assert process.poll() is None, log.read_text()
        with socket.create_connection(("127.0.0.1", mllp), timeout=30) as sock:
            sock.sendall(frame(sample("SIU-S12-01.hl7").replace(b"\n", b"\r")))
            decoder = MllpDecoder()
            acks: list[object] = []
            while not acks:
                data = sock.recv(65536)
                assert data, log.read_text()
                acks += decoder.feed(data)
        assert b"MSA|AA|MSG00012" in getattr(acks[0], "body", b"")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
