"""``anning lab``: JupyterLab on the analyst notebooks, with the library importable and the workbench's database.

The server is the JupyterLab installed beside the library (``sys.executable -m jupyterlab``), so its Python kernel
is the same interpreter and ``import anning_lib`` works in every notebook. It listens on 127.0.0.1 only and keeps
Jupyter's token authentication: the URL printed at start carries the token (reach it from another machine through
an SSH tunnel, ``ssh -L 8888:127.0.0.1:8888 park-server``, never by opening the port).

The kernels run in the notebooks' folder, so everything that locates the database is handed to them absolute:
``ANNING_DB_URL`` (the effective URL of the settings, a relative SQLite path resolved against the current folder),
``ANNING_VAR_DIR`` and ``ANNING_CONFIG`` (the TOML settings file, when one is in use). Registered as ``anning lab``
by :func:`register`.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import typer
from sqlalchemy.engine import make_url

from anning_lib.config import REPO_ROOT, Settings, get_settings
from anning_lib.errors import ConfigError

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
HOST = "127.0.0.1"


def absolute_db_url(url: str, cwd: Path) -> str:
    """``url`` with a relative SQLite file path made absolute against ``cwd`` (other URLs unchanged) (pure)."""
    u = make_url(url)
    db = u.database
    if u.get_backend_name() == "sqlite" and db and db != ":memory:" and not db.startswith("file:") \
            and not Path(db).is_absolute():
        return u.set(database=str((cwd / db).resolve())).render_as_string(hide_password=False)
    return url


def lab_env(settings: Settings, environ: Mapping[str, str], cwd: Path) -> dict[str, str]:
    """The environment of the JupyterLab server and its kernels (pure).

    ``environ`` plus: ``ANNING_DB_URL`` (the settings' effective database URL, absolute), ``ANNING_VAR_DIR``
    (absolute), ``ANNING_CONFIG`` (absolute, when the settings file it names exists), the repository root first on
    ``PYTHONPATH`` (the library importable even when it is not installed), and this interpreter's Jupyter data
    folder first on ``JUPYTER_PATH``, so its ``python3`` kernel, which runs this interpreter, wins over one a user
    may have installed for another Python.
    """
    env = dict(environ)
    env["ANNING_DB_URL"] = absolute_db_url(settings.database_url, cwd)
    env["ANNING_VAR_DIR"] = str((cwd / settings.var_dir).resolve())
    config = Path(environ.get("ANNING_CONFIG", "anning.toml"))
    if (cwd / config).is_file():
        env["ANNING_CONFIG"] = str((cwd / config).resolve())
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [environ.get("PYTHONPATH")])])
    env["JUPYTER_PATH"] = os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter"),
                                           *filter(None, [environ.get("JUPYTER_PATH")])])
    return env


def lab_command(port: int, notebook_dir: Path, token: str, *, open_browser: bool = False,
                allow_root: bool = False) -> list[str]:
    """The JupyterLab command line: this interpreter, loopback only, the given token, no retry on a busy port
    (the printed URL must be the real one) (pure)."""
    return [sys.executable, "-m", "jupyterlab", f"--ServerApp.ip={HOST}", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--ServerApp.root_dir={notebook_dir}",
            f"--IdentityProvider.token={token}", *([] if open_browser else ["--no-browser"]),
            *(["--allow-root"] if allow_root else [])]


def lab(port: int = typer.Option(8888, help="port on 127.0.0.1"),
        no_browser: bool = typer.Option(True, "--no-browser/--browser", help="do not / do open a web browser"),
        notebook_dir: Path = typer.Option(NOTEBOOK_DIR, help="folder JupyterLab opens (default: notebooks/)"),
        allow_root: bool = typer.Option(False, "--allow-root", help="let JupyterLab run as root (it refuses "
                                        "otherwise: its terminals would be root shells; prefer a normal user)")):
    """Open JupyterLab on the analyst notebooks (127.0.0.1 only, token in the printed URL); Ctrl-C stops it."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port: must be 1..65535, got {port}")
    folder = notebook_dir.expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"--notebook-dir: no such folder: {notebook_dir}")
    settings = get_settings()
    env = lab_env(settings, os.environ, Path.cwd())
    db = make_url(env["ANNING_DB_URL"])
    if db.get_backend_name() == "sqlite" and db.database and not Path(db.database).exists():
        typer.echo(f"note: no database at {db.database} yet: run `make demo` (or `anning demo`) first, "
                   "or set ANNING_DB_URL", err=True)
    token = secrets.token_urlsafe(24)
    typer.echo(f"JupyterLab: http://{HOST}:{port}/lab?token={token}")
    typer.echo(f"notebooks: {folder}; database: {db.render_as_string(hide_password=True)}")
    sys.stdout.flush()
    proc = subprocess.Popen(lab_command(port, folder, token, open_browser=not no_browser, allow_root=allow_root),
                            env=env)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: proc.terminate())   # a service stop reaches JupyterLab
    try:
        code = proc.wait()
    except KeyboardInterrupt:          # Ctrl-C reaches JupyterLab too (same process group): let it shut down
        try:
            code = proc.wait(timeout=30)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            proc.terminate()
            code = proc.wait()
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add :func:`lab` to ``app`` as its ``lab`` command."""
    app.command("lab")(lab)
