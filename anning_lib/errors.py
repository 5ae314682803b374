"""One exception hierarchy for the library (ARCHITECTURE.md §5).

Every error a user can cause names the field and the offending value in its message, so that the CLI can print
a single line and exit non-zero.
"""

from __future__ import annotations


class AnningError(Exception):
    """Base of every error the library raises on purpose."""


class ConfigError(AnningError):
    """A setting (environment variable ``ANNING_*`` or TOML file) is invalid."""


class ProblemsError(AnningError):
    """A file failed validation; every problem names its field path and value.

    Parameters
    ----------
    problems : list of (str, object, str)
        ``(field_path, value, reason)`` triples, e.g.
        ``("enterprises[3].devices[1].points[0].unit", "kwhh", "unknown unit 'kwhh'")``.
    source : str, optional
        The file the model was read from.
    """

    def __init__(self, problems: list[tuple[str, object, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        first_path, _value, first_reason = problems[0]
        more = f" (+{len(problems) - 1} more problems)" if len(problems) > 1 else ""
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{first_path}: {first_reason}{more}")

    def report(self) -> str:
        """All problems, one per line."""
        return "\n".join(f"{path}: {reason}" for path, _v, reason in self.problems)


class ParkModelError(ProblemsError):
    """The park model file (``data/park/*.yaml``) is invalid."""


class PointMapError(ProblemsError, ConfigError):
    """A gateway point map (``ingest/*.yaml``) is invalid or disagrees with the park model."""


class ImportFileError(ProblemsError):
    """A file given to ``anning ingest import`` has bad rows; nothing of it was stored."""


class IngestError(AnningError):
    """The gateway could not do what was asked (unreachable device, refused setpoint, bad import file)."""


class StoreError(AnningError):
    """A database operation was refused (bad input, unknown point, schema out of date)."""


class SimulationError(AnningError):
    """The simulator was asked for something it cannot produce (bad range, bad step)."""


class CarbonError(AnningError):
    """Carbon accounting or carbon-asset input was refused (unknown fuel, bad unit, negative amount, ...)."""


class ForecastError(AnningError):
    """A forecast or backtest was refused (too short, gaps, non-numeric values, bad horizon)."""


class DispatchError(AnningError):
    """A dispatch case, tariff or demand-response event was refused (bad field, mismatched lengths, ...)."""


class InfeasibleError(DispatchError):
    """The dispatch problem has no solution (e.g. a terminal state of charge that cannot be reached)."""


class CaseFileError(ProblemsError, DispatchError):
    """A dispatch case or tariff file is invalid; every problem names its field path and value."""


class SolverFailedError(DispatchError):
    """The solver gave no optimal answer in time (time limit, numerical trouble); callers fall back to the rule."""


class AlarmRuleError(ProblemsError):
    """An alarm rule definition is invalid; every problem names its field path and value."""


class AccessError(AnningError):
    """A user may not see or do something (role, enterprise scope), or cannot log in (unknown, inactive, locked)."""


class QualityError(AnningError):
    """An alarm or work-order operation was refused (unknown id, not allowed for the user, bad transition)."""


class ReportError(AnningError):
    """A report could not be defined, run or rendered (bad parameter, template failure, export)."""
