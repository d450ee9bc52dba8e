"""The errors that are the user's to fix (bad data, a bad date or model): the CLI prints their message
and exits 2. Kept apart from the stages so the CLI catches them without importing what the stages use."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Failure:
    """One broken expectation: which table, file, check and column, and example values."""

    table: str
    file: str
    expectation: str
    column: str | None
    detail: str
    examples: list = field(default_factory=list)
    severity: str = "error"  # or "warning": reported, does not stop the pipeline
    partitions: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        col = f" column '{self.column}'" if self.column else ""
        part = f" in partition(s) {', '.join(self.partitions[:5])}" if self.partitions else ""
        ex = f"; e.g. {self.examples[:5]}" if self.examples else ""
        tag = "WARNING " if self.severity == "warning" else ""
        return f"{tag}{self.file}: {self.expectation}{col}{part}: {self.detail}{ex}"


class ValidationFailed(RuntimeError):
    """Raised when a table breaks its expectations; nothing downstream has been touched."""

    def __init__(self, failures: list[Failure]):
        self.failures = failures
        lines = [f"data failed validation ({len(failures)} problem(s)); nothing downstream was changed:"]
        lines += [f"  - {f}" for f in failures]
        super().__init__("\n".join(lines))


class ConfigError(ValueError):
    """A config that cannot work as written (e.g. a derived column's SQL): found before anything runs."""


class WarnError(ValueError):
    """Bad input to the nightly list (date, model, language): the CLI prints it and exits 2."""


class StoreUnavailable(RuntimeError):
    """The online store cannot be reached: the CLI names it and exits 2; nothing was loaded."""
