"""How CTest runs the Python tests, and how their counts reach the end of `ctest`'s output.

    run_pytest.py FILE... : runs pytest on the files (-rs: the reason of every skip is printed)
        and, when CONTRASTIVE_PYTEST_RESULTS names a folder, writes one line there: the counts
        of passed, skipped and failed tests and why the skipped ones were skipped, named after
        the files (or CONTRASTIVE_PYTEST_NAME). Exits with
        pytest's status, or with SKIPPED_EXIT when nothing ran and everything was skipped (CTest
        reports the test as Skipped: SKIP_RETURN_CODE).
    run_pytest.py --summarize FOLDER : prints those lines (CTest runs it after the tests, with
        CTEST_CUSTOM_POST_TEST, so the counts appear after CTest's own summary).
"""

import collections
import os
import pathlib
import re
import sys

SKIPPED_EXIT = 77
NO_TESTS_COLLECTED = 5
RESULTS_ENV = "CONTRASTIVE_PYTEST_RESULTS"
NAME_ENV = "CONTRASTIVE_PYTEST_NAME"  # the line's name; the files' names when unset
WHOLE_FILE = "whole file"


def _reason(report) -> str:
    """A skip's reason, without pytest's "Skipped: " prefix and importorskip's repetition."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
    return re.sub(r"^(could not import '[^']+'): No module named '[^']+'$", r"\1", reason)


class Tally:
    """Counts the outcomes of one pytest run, with the skip reasons."""

    def __init__(self):
        self.counts = collections.Counter()
        self.reasons = collections.Counter()

    def pytest_terminal_summary(self, terminalreporter):
        for outcome in ("passed", "failed", "error", "xfailed", "xpassed"):
            self.counts[outcome] = len(terminalreporter.stats.get(outcome, []))
        for report in terminalreporter.stats.get("skipped", []):
            self.counts["skipped"] += 1
            scope = WHOLE_FILE if getattr(report, "when", "collect") == "collect" else None
            self.reasons[(_reason(report), scope)] += 1

    def line(self, name: str) -> str:
        parts = [f"{self.counts[outcome]} {outcome}"
                 for outcome in ("passed", "failed", "error", "xfailed", "xpassed", "skipped")
                 if self.counts[outcome] or outcome == "passed"]
        text = f"{name}: " + ", ".join(parts)
        if self.reasons:
            why = "; ".join(f"{reason} ({scope})" if scope else f"{reason}: {count}"
                            for (reason, scope), count in self.reasons.most_common())
            text += f" [skipped because: {why}]"
        return text


def run(files) -> int:
    import pytest

    tally = Tally()
    status = int(pytest.main(["-q", "-rs", "-p", "no:cacheprovider", *files], plugins=[tally]))
    name = os.environ.get(NAME_ENV) or ", ".join(pathlib.Path(f).name for f in files)
    line = tally.line(name)
    print(line)
    folder = os.environ.get(RESULTS_ENV)
    if folder:
        path = pathlib.Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        file_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        (path / f"{file_name}.txt").write_text(line + "\n")
    nothing_ran = not any(tally.counts[o] for o in ("passed", "failed", "error", "xpassed"))
    # pytest's 5 is "no tests collected": a file skipped as a whole at import.
    if status in (0, NO_TESTS_COLLECTED) and nothing_ran and tally.counts["skipped"]:
        return SKIPPED_EXIT
    return status


def summarize(folder: str) -> int:
    lines = sorted(p.read_text().strip() for p in pathlib.Path(folder).glob("*.txt"))
    if lines:
        print("\npytest, in this run (passed / skipped and why):")
        for line in lines:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--summarize":
        sys.exit(summarize(sys.argv[2]))
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(run(sys.argv[1:]))
