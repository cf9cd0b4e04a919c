"""What every study in bench/ shares: machine facts, tables, CSV, plots, the docs page it writes, and the pieces
of its command line (the parser, logging, notes, ``--render-only``).

Each study is a package ``bench/<study>/`` run as ``python -m fedledger.bench.<study>`` (or its ``make
bench-<study>`` target). It prints a table with the machine, the package versions and the exact command,
writes ``bench/results/<study>.csv`` (+ ``.json`` with everything) and PNG plots, and renders
``docs/bench-<study>.md``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
#: A folder that takes a study's results and page instead of bench/results/ and docs/: ``make bench-<study>
#: QUICK=1`` sets it, so that a short run never overwrites the documented full run.
OUT = Path(os.environ["FEDLEDGER_BENCH_OUT"]).resolve() if os.environ.get("FEDLEDGER_BENCH_OUT") else None
RESULTS = OUT / "results" if OUT else ROOT / "bench" / "results"
DOCS = OUT if OUT else ROOT / "docs"

CORE_PACKAGES = ("numpy", "scikit-learn", "safetensors", "cryptography")
FABRIC_PACKAGES = ("grpcio", "protobuf", "hyperledger-fabric-protos", "fabric-chaincode-python")
ML_PACKAGES = ("torch", "transformers", "peft", "opacus")
BASELINE_PACKAGES = ("byzfl", "flwr")


def command_line() -> str:
    """The command that produced a result, as a user would type it from the repository root.

    ``python -m <module> ...`` when the study ran as a module (``__main__`` has a spec), else the script path.
    """
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return shlex.join(["python", "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]])
    script = Path(sys.argv[0])
    with_root = script.resolve().relative_to(ROOT) if script.resolve().is_relative_to(ROOT) else script
    return shlex.join(["python", str(with_root), *sys.argv[1:]])


def current_command(command: str) -> str:
    """A recorded command as it is typed today: ``python bench/<study>.py ...`` (the layout before the studies
    became packages, still in older results) becomes ``python -m fedledger.bench.<study> ...``."""
    return re.sub(r"^\S*python\S* bench/(\w+)\.py\b", r"python -m fedledger.bench.\1", command)


def _command_output(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({exc})"


def _first_value(path: str, prefix: str, sep: str = ":") -> str:
    file = Path(path)
    if not file.exists():
        return ""
    for line in file.read_text().splitlines():
        if line.startswith(prefix):
            return line.split(sep, 1)[1].strip().strip('"')
    return ""


def machine_facts(packages: Iterable[str] = CORE_PACKAGES, *, fabric_peer: bool = False) -> dict[str, str]:
    """Machine, OS, Python, load, and the versions of ``packages`` (and of the Fabric peer if asked)."""
    mem_kb = _first_value("/proc/meminfo", "MemTotal").split()
    facts = {
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "CPU": _first_value("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores (logical)": str(os.cpu_count()),
        "RAM": f"{int(mem_kb[0]) / 1024 / 1024:.1f} GiB" if mem_kb else "unknown",
        "OS": f"{_first_value('/etc/os-release', 'PRETTY_NAME=', '=')} ({platform.system()} {platform.release()})",
        "Python": platform.python_version(),
        "load average at start (1/5/15 min)": _load_average(),
    }
    for package in packages:
        try:
            facts[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            facts[package] = "not installed"
    if fabric_peer:
        peer = _command_output(str(_fabric_binary("peer")), "version")
        wanted = ("Version:", "Commit SHA:", "Go version:", "OS/Arch:")
        facts["peer version"] = (
            ", ".join(line.strip() for line in peer.splitlines() if line.strip().startswith(wanted)) or peer
        )
    return facts


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def add_end_load(machine: dict[str, str]) -> None:
    """Adds the load average at the end of a run to its machine facts (the start's is already there)."""
    machine["load average at end (1/5/15 min)"] = _load_average()


def _fabric_binary(name: str) -> Path | str:
    """The Fabric binary the network scripts use (fabric-bin/paths.env, written by `make fabric-bin`), else
    ``$FABRIC_BIN/<name>``, else ``name`` on PATH."""
    paths = ROOT / "fabric-bin" / "paths.env"
    if paths.is_file():
        for line in paths.read_text().splitlines():
            if line.startswith("FABRIC_BIN_DIR="):
                return Path(line.partition("=")[2]) / name
    return Path(os.environ["FABRIC_BIN"]) / name if os.environ.get("FABRIC_BIN") else name


#: What the detector's results depend on: the anomaly package and the contract's verdict path.
DETECTOR_PATHS = ("anomaly", "chaincode/verdicts.py", "chaincode/transactions/finalize.py", "chaincode/records.py")


def detector_version() -> str:
    """Which detector was measured: the last commit touching :data:`DETECTOR_PATHS`, and a content hash of
    those files when they have uncommitted changes (so a later run can tell whether the code changed)."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "log", "-1", "--format=%h %s", "--", *DETECTOR_PATHS], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--short", "--", *DETECTOR_PATHS], capture_output=True, text=True)
    changed = sorted({line[3:] for line in dirty.stdout.splitlines() if line.strip()})
    text = f"last commit {head.stdout.strip() or 'unknown'}"
    if changed:
        found = [[ROOT / p] if (ROOT / p).is_file() else list((ROOT / p).rglob("*.py")) for p in DETECTOR_PATHS]
        files = sorted(f for group in found for f in group if "__pycache__" not in f.parts)
        digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]
        text += f"; uncommitted changes in {', '.join(changed)} (content sha256 {digest})"
    return text


def fmt(value: Any) -> str:
    """Numbers as people read them in a table: NaN as a dash, large values with separators."""
    if isinstance(value, float):
        if value != value:
            return "—"
        return f"{value:,.1f}" if abs(value) >= 10 or value == int(value) else f"{value:.3g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], fields: Sequence[str] | None = None) -> Path:
    """Rows (dicts) to CSV; the columns are ``fields`` or the union of keys in first-seen order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fields is None:
        fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def save_figure(figure: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG (Agg backend, no display needed) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (benchmarks run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def render_page(
    title: str,
    *,
    command: str,
    machine: Mapping[str, str],
    sections: Sequence[tuple[str, str]],
    intro: str = "",
) -> str:
    """A docs page: title, how to reproduce, the machine, then (heading, markdown body) sections."""
    out = [f"# {title}", ""]
    if intro:
        out += [intro, ""]
    out += ["Reproduce with:", "", "```", command, "```", "", "## Machine", ""]
    out += [markdown_table(("fact", "value"), list(machine.items())), ""]
    for heading, body in sections:
        out += [f"## {heading}", "", body.rstrip(), ""]
    return "\n".join(out)


def save_page(path: Path, title: str, **page: Any) -> Path:
    """Writes the page of ``title`` to ``path``; ``page`` are :func:`render_page`'s keyword arguments."""
    path.write_text(render_page(title, **page))
    return path


def report_page(
    title: str, report: Mapping[str, Any], sections: Sequence[tuple[str, str]], *, study: str, make_target: str
) -> str:
    """The page of a study whose run is one report dict: ``sections``, then the report's notes as its analysis;
    the recorded command as typed today, and an intro naming the module, its make target and the raw numbers."""
    notes = [("Analysis", report["notes"])] if report.get("notes") else []
    return render_page(
        title,
        command=current_command(report["command"]),
        machine=report["machine"],
        sections=[*sections, *notes],
        intro=f"Generated by `python -m fedledger.bench.{study}` (`make {make_target}`); raw numbers in "
        f"`bench/results/{study}.{{csv,json}}`. Re-running overwrites this page.",
    )


def figure_link(path: Path, alt: str | None = None) -> str:
    """Markdown image of a plot saved under RESULTS, linked relative to the page written in DOCS."""
    return f"![{alt or path.stem}]({os.path.relpath(path, DOCS)})"


def plots_section(*figures: Path | tuple[Path, str]) -> tuple[str, str]:
    """The page's "Plots" section: each figure (or ``(figure, alt text)``) linked, one paragraph each."""
    links = [figure_link(*f) if isinstance(f, tuple) else figure_link(f) for f in figures]
    return "Plots", "\n\n".join(links)


def files_section(study: str, csv_rows: str, json_contents: str) -> tuple[str, str]:
    """The page's "Files" section: what one row of ``bench/results/<study>.csv`` is and what the JSON holds."""
    return (
        "Files",
        f"`bench/results/{study}.csv` ({csv_rows}), `bench/results/{study}.json` ({json_contents}).",
    )


def print_report(title: str, *, command: str, machine: Mapping[str, str], table: str) -> None:
    """What a study prints at the end: the command, the machine facts and its main table."""
    print(f"\n{title}\ncommand: {command}")
    for key, value in machine.items():
        print(f"  {key}: {value}")
    print()
    print(table)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The ML studies' log lines: no level.
BRIEF_LOG_FORMAT = "%(asctime)s %(name)s %(message)s"


def study_parser(module: str, description: str | None, *, quick_help: str) -> argparse.ArgumentParser:
    """A study's arguments, starting with the ``--quick`` every study has: ``python -m <module>`` as the program,
    ``description`` shown as written (the package docstring, or its :func:`first_paragraph`)."""
    p = argparse.ArgumentParser(
        prog=f"python -m {module}", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph (what ``--help`` shows of the studies with a long docstring)."""
    return (doc or "").split("\n\n")[0]


def notes_path(study: str) -> Path:
    """Where a study's hand-written notes live (its page's analysis or method section)."""
    return ROOT / "bench" / f"{study}_notes.md"


def add_report_options(p: argparse.ArgumentParser, study: str, *, seed: int) -> None:
    """``--notes``, ``--no-write``, ``--render-only`` and ``--seed``, as the studies that write one report dict
    and plots (aggregation latency, scalability) take them."""
    p.add_argument("--notes", type=Path, default=notes_path(study))
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument(
        "--render-only",
        action="store_true",
        help=f"rewrite the doc and plots from {study}.json in the results folder (e.g. after editing the notes)",
    )
    p.add_argument("--seed", type=int, default=seed)


def fill_defaults(args: argparse.Namespace, quick: Mapping[str, Any], full: Mapping[str, Any]) -> None:
    """Every option left unset (``None``) takes the ``--quick`` or the full run's value."""
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def comma_list(text: str, convert: Callable[[str], T]) -> list[T]:
    """The non-empty items of a comma-separated option value, each through ``convert``."""
    return [convert(item) for item in text.split(",") if item.strip()]


def read_notes(path: Path | None) -> str:
    """A notes file's text, empty when there is none."""
    return path.read_text().strip() if path and path.exists() else ""


def configure_logging(
    level: int = logging.INFO, *, verbose: bool = False, quiet: Sequence[str] = ("fedledger",), brief: bool = False
) -> None:
    """Log lines on stderr at ``level`` (DEBUG when ``verbose``; :data:`BRIEF_LOG_FORMAT` when ``brief``), the
    loggers named in ``quiet`` held at WARNING unless ``verbose``."""
    logging.basicConfig(level=logging.DEBUG if verbose else level, format=BRIEF_LOG_FORMAT if brief else LOG_FORMAT)
    for name in () if verbose else quiet:
        logging.getLogger(name).setLevel(logging.WARNING)


def read_results(name: str) -> dict[str, Any]:
    """A study's saved ``<name>.json`` from the results folder."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def save_results(name: str, rows: Sequence[Mapping[str, Any]], payload: Any) -> list[Path]:
    """``<name>.csv`` (``rows``) and ``<name>.json`` (``payload``) in the results folder."""
    return [write_csv(RESULTS / f"{name}.csv", rows), write_json(RESULTS / f"{name}.json", payload)]


def render_report_again(study: str, page: Path, notes: Path | None, write: Callable[[dict[str, Any]], object]) -> int:
    """``--render-only`` of a study that writes one report dict: its saved JSON with today's ``notes``, written
    again by ``write``."""
    report = read_results(study)
    report["notes"] = read_notes(notes)
    write(report)
    logging.getLogger(f"bench.{study}").info("rewrote %s from %s", page, RESULTS / f"{study}.json")
    return 0


def finish_report(
    report: dict[str, Any],
    study: str,
    notes: Path | None,
    *,
    summary: Callable[[dict[str, Any]], None],
    write: Callable[[dict[str, Any]], Sequence[Path]] | None,
) -> int:
    """The end of a run of such a study: the notes into the report, ``summary`` printed, then ``write`` (none
    with ``--no-write``)."""
    if text := read_notes(notes):
        report["notes"] = text
    summary(report)
    if write is not None:
        written = write(report)
        logging.getLogger(f"bench.{study}").info("wrote %s", ", ".join(map(str, written)))
    return 0
