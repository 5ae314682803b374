"""The one settings object: environment variables ``ANNING_*`` and an optional TOML file.

The TOML file is named by ``ANNING_CONFIG`` (default ``anning.toml`` in the working directory, if present).
Environment variables win over the file.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The project checkout (the package is installed editable from it)."""


def _default_var_dir() -> Path:
    return Path(os.environ.get("ANNING_VAR_DIR", REPO_ROOT / "var"))


class Settings(BaseSettings):
    """Settings of the workbench; every field can be set as ``ANNING_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ANNING_", extra="ignore")

    var_dir: Path = Field(default_factory=_default_var_dir, description="runtime files: SQLite database, logs")
    db_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in var_dir")
    data_dir: Path = Field(default=REPO_ROOT / "data", description="reference data folder")
    park_file: Path | None = Field(default=None, description="park model YAML; default data/park/anning.yaml")
    ingest_dir: Path = Field(default=REPO_ROOT / "ingest", description="gateway point maps (modbus/opcua/mqtt.yaml)")
    timezone: str = Field(default="Asia/Shanghai", description="display time zone; storage is always UTC")
    seed: int = Field(default=20261125, description="simulator seed")
    dispatch_interval_s: float = Field(default=900.0, gt=0, description="MPC re-planning period [s]")
    dispatch_time_limit_s: float = Field(default=2.0, gt=0, description="solver time limit per site; then the rule [s]")
    login_max_failures: int = Field(default=5, ge=1, description="failed logins in a row that lock an account")
    login_lock_min: float = Field(default=15.0, gt=0, description="how long a locked account stays locked [min]")
    login_rate_per_min: int = Field(default=20, ge=1, description="log-in attempts per client address and minute")
    portal_port: int = Field(default=5006, ge=1, le=65535, description="the portal's TCP port")
    portal_address: str = Field(default="127.0.0.1", description="address the portal listens on")
    portal_certfile: Path | None = Field(default=None, description="TLS certificate (PEM): the portal serves HTTPS")
    portal_keyfile: Path | None = Field(default=None, description="TLS private key (PEM) of portal_certfile")
    reports_dir: Path = Field(default=REPO_ROOT / "reports", description="report templates (papermill notebooks)")
    report_attempts: int = Field(default=3, ge=1, le=10, description="tries of a report run before it is failed")
    report_retry_s: float = Field(default=60.0, ge=0, description="wait between two tries of a report run [s]")
    report_schedule: bool = Field(default=True, description="anning serve runs the monthly report schedule")
    backup_dir: Path | None = Field(default=None, description="backup folder; default var_dir/backups")
    backup_key_file: Path | None = Field(default=None, description="backup key (AES-256, mode 0600), kept apart "
                                         "from the backups; default var_dir/backup.key")
    backup_keep: int = Field(default=14, ge=1, description="newest backups kept by the rotation after each create")
    raw_retention_days: float = Field(default=400.0, gt=0, description="raw measurements kept this long; "
                                      "15-minute rollups are kept for good (anning db prune) [d]")

    @property
    def report_out_dir(self) -> Path:
        """Where produced reports go (served by the portal's ``/statements/<id>``)."""
        return self.var_dir / "reports"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("ANNING_CONFIG", "anning.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @property
    def database_url(self) -> str:
        """The effective database URL (SQLite file in ``var_dir`` unless ``db_url`` is set)."""
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.var_dir / 'anning.sqlite').resolve()}"

    @property
    def park_path(self) -> Path:
        return self.park_file or self.data_dir / "park" / "anning.yaml"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
