#!/usr/bin/env bash
# Security check (issue 12), run by `make security` and first thing in `make test` (so in CI):
#   1. static: ruff's flake8-bandit rules (`ruff check --select S`) over anning_lib/ dashboards/ bench/ scripts/,
#      compared with security/ruff-baseline.tsv (findings keyed by file + rule + the offending line's text);
#   2. dependency audit: pip-audit of requirements.lock's pins, compared with security/pip-audit-baseline.tsv.
# Exit 1 when there is a finding that is not in a baseline; 2 when a baseline file or a tool is broken.
# How to read the report and accept a finding: security/README.md.
#
# usage: scripts/security-check.sh             check, print the report and a summary
#        scripts/security-check.sh --propose   also print each new finding as a baseline line to review and paste
# environment:
#   BIN=.venv/bin                  where python, ruff and pip-audit are (the Makefile passes its own)
#   ANNING_REQUIRE_AUDIT=1         fail when the dependency audit cannot run or leaves packages unaudited
#                                  (default: report it loudly and go on; see security/README.md, "CI")
#   ANNING_AUDIT_SERVICE=pypi|osv  pip-audit's vulnerability service (default pypi)
#   ANNING_AUDIT_OSV_URL=URL       an OSV API of your own (implies the osv service)
#   ANNING_AUDIT_REPORT=FILE       use this pip-audit JSON report (`pip-audit -r requirements.lock --no-deps
#                                  --disable-pip -f json -o FILE`, made where a database is reachable, of the same
#                                  lock) instead of running pip-audit here
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
for tool in python ruff pip-audit; do
  if [ ! -x "$BIN/$tool" ]; then
    echo "security-check: $BIN/$tool is missing: run 'make setup' (ruff and pip-audit are in the test extra)" >&2
    exit 2
  fi
done
export BIN
exec "$BIN/python" - "$@" <<'PY'
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

BIN = os.environ["BIN"]
TARGETS = ["anning_lib", "dashboards", "bench", "scripts"]
RUFF_BASELINE = "security/ruff-baseline.tsv"
AUDIT_BASELINE = "security/pip-audit-baseline.tsv"
LOCK = "requirements.lock"
AUDIT_TIMEOUT_S = 45
PROPOSE = "--propose" in sys.argv[1:]
unknown = [a for a in sys.argv[1:] if a != "--propose"]
if unknown:
    sys.exit(f"security-check: unknown argument(s) {' '.join(unknown)} (usage: scripts/security-check.sh [--propose])")
REQUIRE_AUDIT = os.environ.get("ANNING_REQUIRE_AUDIT", "") not in ("", "0")
t0 = time.monotonic()


def broken(msg):
    print(f"security-check: {msg}", file=sys.stderr)
    sys.exit(2)


def squash(text):
    """A line's text as findings are keyed: stripped, runs of whitespace (tabs too) made one space."""
    return " ".join(text.split())


def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_tsv(path, nfields):
    """Rows of a baseline file: tab-separated, '#' comments and blank lines skipped; the last field (why) required."""
    rows = []
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except FileNotFoundError:
        broken(f"{path} is missing (an empty baseline is a file with only comments)")
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != nfields or not all(f.strip() for f in fields):
            broken(f"{path}:{n}: expected {nfields} non-empty tab-separated fields, got {len(fields)}: {line!r}")
        why = fields[-1].strip()
        if why.upper().startswith("TODO"):
            broken(f"{path}:{n}: the justification is still a TODO; write why it is accepted (security/README.md)")
        rows.append([f.strip() for f in fields])
    return rows


def tail(text, n=1):
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("WARNING:pip_audit")]
    return " / ".join(lines[-n:]) if lines else "(no output)"


# ---------------------------------------------------------------- 1. static check: ruff --select S
baseline = collections.Counter()
for path, rule, code, _why in read_tsv(RUFF_BASELINE, 4):
    baseline[(path, rule, squash(code))] += 1

targets = [t for t in TARGETS if os.path.isdir(t)]
# --isolated: no [tool.ruff] setting (excludes, per-file-ignores) can hide a finding; --ignore-noqa: neither can a
# `# noqa: S...` comment: the baseline is the one place a finding is accepted, with its reason, in review.
cmd = [f"{BIN}/ruff", "check", "--isolated", "--ignore-noqa", "--no-cache", "--target-version", "py311", "--select", "S",
       "--output-format", "json", "--exit-zero", *targets]
proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
if proc.returncode != 0:
    broken(f"ruff failed (exit {proc.returncode}): {tail(proc.stderr, 3)}")
try:
    diagnostics = json.loads(proc.stdout or "[]")
except json.JSONDecodeError as exc:
    broken(f"ruff's JSON report does not parse: {exc}")

root = os.getcwd()
file_lines = {}
findings = []  # (path, row, col, rule, message, line text)
for d in diagnostics:
    path = os.path.relpath(d["filename"], root)
    if path not in file_lines:
        with open(d["filename"], encoding="utf-8", errors="replace") as fh:
            file_lines[path] = fh.read().splitlines()
    row = d["location"]["row"]
    lines = file_lines[path]
    text = lines[row - 1] if 0 < row <= len(lines) else ""
    findings.append((path, row, d["location"]["column"], d.get("code") or "syntax-error", d["message"], squash(text)))
findings.sort()

remaining = baseline.copy()
new_static, by_rule = [], collections.Counter()
for f in findings:
    key = (f[0], f[3], f[5])
    by_rule[f[3]] += 1
    if remaining[key] > 0:
        remaining[key] -= 1
    else:
        new_static.append(f)
stale_static = sorted(k for k, c in remaining.items() for _ in range(c))

print(f"== static check: ruff check --select S --isolated --ignore-noqa over {' '.join(targets)} ==")
for path, row, col, rule, msg, text in new_static:
    print(f"NEW  {path}:{row}:{col}: {rule} {msg}\n       | {text}")
for path, rule, text in stale_static:
    print(f"gone {path}: {rule} | {text}   (in {RUFF_BASELINE} but no longer found: remove the line)")
if PROPOSE and new_static:
    print(f"-- baseline lines for the new findings (review each, replace TODO by why it is safe, add to {RUFF_BASELINE}):")
    for path, row, col, rule, msg, text in new_static:
        print(f"{path}\t{rule}\t{text}\tTODO: why")
rules = ", ".join(f"{r} {c}" for r, c in sorted(by_rule.items())) or "none"
static_line = (f"static (ruff S rules): {len(findings)} findings ({rules}): "
               f"{len(findings) - len(new_static)} in baseline, {len(new_static)} NEW"
               + (f", {len(stale_static)} baseline entries gone" if stale_static else ""))

# ---------------------------------------------------------------- 2. dependency audit: pip-audit
accepted = collections.defaultdict(set)  # package -> accepted ids
for vid, pkg, _why in read_tsv(AUDIT_BASELINE, 3):
    accepted[canon(pkg)].add(vid)

pins = {}
for line in open(LOCK, encoding="utf-8"):
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#\\]+)", line)
    if m:
        pins[canon(m.group(1))] = m.group(2)

service = "osv" if os.environ.get("ANNING_AUDIT_OSV_URL") else os.environ.get("ANNING_AUDIT_SERVICE", "pypi")
report_file = os.environ.get("ANNING_AUDIT_REPORT", "")
unavailable = None  # why the audit could not run
report = None
if report_file:
    source = f"report {report_file}"
    try:
        report = json.load(open(report_file, encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        unavailable = f"cannot read ANNING_AUDIT_REPORT={report_file}: {exc}"
else:
    source = f"pip-audit, {service} service"
    cmd = [f"{BIN}/pip-audit", "-r", LOCK, "--no-deps", "--disable-pip", "--progress-spinner", "off",
           "--timeout", "10", "-s", service, "-f", "json"]
    if os.environ.get("ANNING_AUDIT_OSV_URL"):
        cmd += ["--osv-url", os.environ["ANNING_AUDIT_OSV_URL"]]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "audit.json")
        try:
            proc = subprocess.run(cmd + ["-o", out], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  timeout=AUDIT_TIMEOUT_S)
            if os.path.exists(out) and os.path.getsize(out):
                report = json.load(open(out, encoding="utf-8"))
            else:
                unavailable = f"pip-audit exited {proc.returncode} without a report: {tail(proc.stderr)}"
        except subprocess.TimeoutExpired:
            unavailable = f"pip-audit had no answer within {AUDIT_TIMEOUT_S} s"
        except json.JSONDecodeError as exc:
            unavailable = f"pip-audit's report does not parse: {exc}"

audited, skipped, new_vulns, known_vulns, seen_ids = [], [], [], [], set()
if report is not None:
    deps = report.get("dependencies", [])
    if report_file:
        got = {canon(d["name"]): d.get("version") for d in deps}
        differ = sorted(p for p in set(pins) | set(got)
                        if p not in pins or p not in got or (got[p] is not None and got[p] != pins[p]))
        if differ:
            unavailable = (f"the report is not of this {LOCK}: {len(differ)} packages differ "
                           f"(e.g. {', '.join(differ[:3])}); make it again from this lock")
    if unavailable is None:
        audited = [d for d in deps if "skip_reason" not in d]
        skipped = [d for d in deps if "skip_reason" in d]
        if not audited:
            first = skipped[0]["skip_reason"] if skipped else "no packages in the report"
            unavailable = (f"the {service} service answered for none of the {len(deps)} pinned packages, so nothing "
                           f"was audited (first: {first!r}); pip-audit itself says 'No known vulnerabilities "
                           f"found' in this case, which is why this check does not trust its exit code")

if unavailable is None:
    for d in audited:
        pkg = canon(d["name"])
        for v in d.get("vulns", []):
            ids = {v["id"], *v.get("aliases", [])}
            seen_ids.update((pkg, i) for i in ids)
            entry = (d["name"], d.get("version", "?"), v["id"], sorted(set(v.get("aliases", []))),
                     v.get("fix_versions", []), (v.get("description") or "").strip().splitlines()[:1])
            (known_vulns if ids & accepted[pkg] else new_vulns).append(entry)

print(f"== dependency audit: {source}, {len(pins)} pins of {LOCK} ==")
if unavailable:
    bar = "!" * 100
    print(f"{bar}\n!! DEPENDENCY AUDIT NOT RUN: {unavailable}\n"
          f"!! no vulnerability database was consulted: known vulnerabilities of the pinned packages are NOT checked,\n"
          f"!! and the {sum(len(s) for s in accepted.values())} accepted ids of {AUDIT_BASELINE} were not re-checked.\n"
          + ("!! ANNING_REQUIRE_AUDIT=1: this is an error.\n" if REQUIRE_AUDIT else
             "!! Not an error here (ANNING_REQUIRE_AUDIT unset): run the audit where a database is reachable\n"
             "!! (security/README.md, 'Dependency audit').\n") + bar)
else:
    for name, ver, vid, aliases, fixes, desc in new_vulns:
        print(f"NEW  {name}=={ver}: {vid}" + (f" ({', '.join(aliases)})" if aliases else "")
              + f"; fixed in: {', '.join(fixes) or 'no fixed release'}" + (f"\n       | {desc[0][:160]}" if desc else ""))
    for pkg, ids in sorted(accepted.items()):
        for vid in sorted(ids):
            if (pkg, vid) not in seen_ids:
                print(f"gone {pkg}: {vid}   (in {AUDIT_BASELINE} but no longer reported: remove the line)")
    if skipped:
        print(f"not audited ({len(skipped)}): " + "; ".join(d["skip_reason"] for d in skipped[:10])
              + (" ..." if len(skipped) > 10 else ""))
    if PROPOSE and new_vulns:
        print(f"-- baseline lines for the new vulnerabilities (review, replace TODO, add to {AUDIT_BASELINE}):")
        for name, ver, vid, *_ in new_vulns:
            print(f"{vid}\t{name}\tTODO: why it does not affect us / until when")

if unavailable:
    audit_line = "dependency audit (pip-audit): NOT RUN: no vulnerability data consulted (reason above)" + (
        " (required: FAIL)" if REQUIRE_AUDIT else " (not required here)")
else:
    audit_line = (f"dependency audit (pip-audit): {len(audited)} of {len(pins)} pins audited"
                  + (f", {len(skipped)} NOT audited" if skipped else "")
                  + f": {len(known_vulns) + len(new_vulns)} vulnerabilities, {len(known_vulns)} in baseline, "
                  f"{len(new_vulns)} NEW")

problems = []
if new_static:
    problems.append(f"{len(new_static)} new static finding(s)")
if new_vulns:
    problems.append(f"{len(new_vulns)} new vulnerabilit(y/ies)")
if REQUIRE_AUDIT and unavailable:
    problems.append("the dependency audit could not run (ANNING_REQUIRE_AUDIT=1)")
if REQUIRE_AUDIT and skipped and not unavailable:
    problems.append(f"{len(skipped)} package(s) not audited (ANNING_REQUIRE_AUDIT=1)")

print("== security check summary ==")
print(f"  {static_line}")
print(f"  {audit_line}")
if problems:
    print(f"  security check: FAIL: {'; '.join(problems)}  (security/README.md says how to fix or accept)"
          f"  [{time.monotonic() - t0:.1f} s]")
    sys.exit(1)
print(f"  security check: OK, no new findings" + (" (static check only: the audit did not run)" if unavailable else "")
      + f"  [{time.monotonic() - t0:.1f} s]")
PY
