"""Operations: backups, retention, health and metrics."""
