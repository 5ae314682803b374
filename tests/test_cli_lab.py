"""``anning lab``: JupyterLab on the notebooks, loopback only, token kept, a kernel that imports the library and
finds the database. The server test starts the real command in a subprocess on a free port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import typer
from conftest import REPO
from typer.testing import CliRunner

from anning_lib.cli.lab import HOST, absolute_db_url, lab_command, lab_env, register
from anning_lib.config import Settings
from anning_lib.errors import ConfigError

STARTUP_S = 90.0


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)            # a group, so that "lab" is a subcommand as in `anning`
    register(app)
    return app


# ------------------------------------------------------------------------------------------- pure parts
def test_relative_sqlite_urls_become_absolute(tmp_path):
    assert absolute_db_url("sqlite:///var/x.sqlite", tmp_path) == f"sqlite:///{tmp_path / 'var' / 'x.sqlite'}"
    assert absolute_db_url("sqlite:////abs/x.sqlite", tmp_path) == "sqlite:////abs/x.sqlite"
    assert absolute_db_url("sqlite://", tmp_path) == "sqlite://"
    pg = "postgresql+psycopg://u:p@127.0.0.1:5432/anning"
    assert absolute_db_url(pg, tmp_path) == pg


def test_the_kernels_get_the_database_absolute(tmp_path, monkeypatch):
    (tmp_path / "park.toml").write_text("")
    monkeypatch.delenv("ANNING_CONFIG", raising=False)
    settings = Settings(db_url="sqlite:///rel.sqlite", var_dir=Path("var"))
    env = lab_env(settings, {"ANNING_CONFIG": "park.toml", "PYTHONPATH": "/x", "HOME": "/h"}, tmp_path)
    assert env["ANNING_DB_URL"] == f"sqlite:///{tmp_path / 'rel.sqlite'}"
    assert env["ANNING_VAR_DIR"] == str(tmp_path / "var")
    assert env["ANNING_CONFIG"] == str(tmp_path / "park.toml")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/x"] and env["HOME"] == "/h"
    assert env["JUPYTER_PATH"].split(os.pathsep)[0] == str(Path(sys.prefix) / "share" / "jupyter")
    assert "ANNING_CONFIG" not in lab_env(settings, {}, tmp_path)        # anning.toml absent: none passed on


def test_the_command_line_is_loopback_only_with_a_token(tmp_path):
    cmd = lab_command(8890, tmp_path, "tok")
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert {"--ServerApp.ip=127.0.0.1", "--ServerApp.port=8890", "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={tmp_path}", "--IdentityProvider.token=tok", "--no-browser"} <= set(cmd)
    assert "--no-browser" not in lab_command(8890, tmp_path, "tok", open_browser=True)
    assert "--allow-root" not in cmd and "--allow-root" in lab_command(8890, tmp_path, "tok", allow_root=True)


def test_bad_options_name_the_field(tmp_path):
    result = CliRunner().invoke(_app(), ["lab", "--notebook-dir", str(tmp_path / "absent")])
    assert isinstance(result.exception, ConfigError) and "--notebook-dir" in str(result.exception)
    result = CliRunner().invoke(_app(), ["lab", "--port", "70000"])
    assert isinstance(result.exception, ConfigError) and "--port" in str(result.exception)
    assert CliRunner().invoke(_app(), ["lab", "--help"]).exit_code == 0


# ------------------------------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _get(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body or {}).encode() if method == "POST" else None
    req = urllib.request.Request(url, method=method, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as err:
        return err.code, None


def _run_in_kernel(base: str, token: str, notebook: str, code: str) -> str:
    """Open a kernel session for ``notebook`` through the REST API (as JupyterLab does when it opens one), run
    ``code`` over the kernel's web socket, return its standard output."""
    import websocket

    status, session = _get(f"{base}/api/sessions?token={token}", "POST", {
        "path": notebook, "name": notebook, "type": "notebook", "kernel": {"name": "python3"}})
    assert status == 201, status
    kernel = session["kernel"]
    ws = websocket.create_connection(f"ws://{base.split('://', 1)[1]}/api/kernels/{kernel['id']}/channels"
                                     f"?token={token}", timeout=60)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        out, replied, idle, deadline = [], False, False, time.monotonic() + 60
        while not (replied and idle):      # the reply (shell) may overtake the output (iopub): wait for both
            assert time.monotonic() < deadline, "the kernel did not finish within 60 s"
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "execute_reply":
                assert msg["content"]["status"] == "ok", msg["content"]
                replied = True
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        return "".join(out)
    finally:
        ws.close()
        _get(f"{base}/api/sessions/{session['id']}?token={token}", "DELETE")


def test_anning_lab_serves_the_notebooks_with_a_kernel_that_imports_the_library(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANNING_", "JUPYTER"))}
    env.update({"ANNING_DB_URL": "sqlite:///rel.sqlite", "ANNING_VAR_DIR": str(tmp_path / "var"),
                "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")})
    code = ("import sys, typer\nfrom anning_lib.cli.lab import register\n"
            "app = typer.Typer()\napp.callback()(lambda: None)\nregister(app)\napp(sys.argv[1:])")
    args = ["lab", "--port", str(port), "--notebook-dir", str(REPO / "notebooks"),
            *(["--allow-root"] if os.geteuid() == 0 else [])]                  # CI runs as root
    out, log = tmp_path / "stdout.txt", tmp_path / "jupyter.log"
    with open(out, "w") as fo, open(log, "w") as fe:         # files, not pipes: nothing blocks on a full pipe
        proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=tmp_path, env=env, stdout=fo, stderr=fe,
                                start_new_session=True)
    try:
        deadline, token = time.monotonic() + STARTUP_S, None
        base = f"http://{HOST}:{port}"
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"anning lab exited {proc.returncode}: {log.read_text()[-2000:]}"
            first = out.read_text().splitlines()
            if token is None and first:
                assert first[0].startswith(f"JupyterLab: {base}/lab?token="), first
                token = first[0].rsplit("=", 1)[1]
            if token:
                try:
                    if _get(f"{base}/api/status?token={token}")[0] == 200:
                        break
                except OSError:
                    pass
            time.sleep(0.5)
        else:
            raise AssertionError(f"JupyterLab did not answer in {STARTUP_S:.0f} s: {log.read_text()[-2000:]}")

        assert _get(f"{base}/api/status")[0] == 403                        # the token is required
        with pytest.raises(OSError):                                       # loopback 127.0.0.1 only
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
        status, listing = _get(f"{base}/api/contents?token={token}")
        names = {item["name"] for item in listing["content"]}
        assert status == 200 and {"energy_balance.ipynb", "data_quality_audit.ipynb"} <= names, names

        printed = _run_in_kernel(base, token, "energy_balance.ipynb",
                                 "import os, anning_lib\nprint(anning_lib.__file__)\n"
                                 "print(os.environ['ANNING_DB_URL'])\nprint(os.getcwd())")
        lib_file, db_url, cwd = printed.split()
        assert Path(lib_file).is_relative_to(REPO)
        assert db_url == f"sqlite:///{tmp_path / 'rel.sqlite'}"           # made absolute for the kernels
        assert Path(cwd) == REPO / "notebooks"

        proc.send_signal(signal.SIGTERM)                                   # the command stops JupyterLab too
        assert proc.wait(timeout=30) is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                _get(f"{base}/api/status?token={token}")
            except OSError:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("JupyterLab still answers after anning lab was stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            os.killpg(proc.pid, signal.SIGKILL)                            # whatever is left of its group
        except ProcessLookupError:
            pass
