"""Mutation score of the ``ulp`` audit on impl (``nox -s mutation``): cosmic-ray mutates impl's
step code, and each mutant is judged by ``python -m conformance audit impl:CLASS --contract ulp``
for the classes the mutated file holds, never by the bitwise comparison with torch. The question
is how strong the harness is when the math, not torch, is the oracle.

``python tools/mutation.py run [FILE ...]`` copies the work tree to a scratch folder (cosmic-ray
rewrites the files it mutates: the tree you work in is never touched), and for each file of
``SCOPE``: writes a cosmic-ray config, ``init``, skips the mutants outside the step code
(``cr-filter-lines``, with line ranges read from the AST), runs the baseline (the unmutated
audit must pass) and ``exec``, and writes every outcome, with each survivor's diff, to
``reports/mutation.json``. ``python tools/mutation.py judge FILE`` is the per-mutant command.

Scope (docs/mutation.md says why): the elementwise update functions and the ``_update`` /
``_init_state`` methods of Adam/AdamW, SGD, Adagrad and RMSprop, which both the for-loop and the
foreach path run (the ``Ops`` object they get is the path). Not the constructors' validation
(bad input: the ``errors`` check's), nor ``_fused_update`` (the fused kernels: ``--kwargs
fused=True`` audits, another scope), nor ``impl/_ops.py`` (shared by every class: each of its
mutants would need every audit).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# file -> (functions mutated, "Class.method" for methods; audits that judge it: (target, entry))
SCOPE: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "impl/adam.py": (
        ("adam_update", "Adam._init_state", "Adam._update"),
        (("impl:Adam", "Adam"), ("impl:AdamW", "AdamW")),
    ),
    "impl/sgd.py": (
        ("sgd_update", "SGD._update"),
        (("impl:SGD", "SGD"), ("impl:SGD", "SGD-nesterov")),
    ),
    "impl/adagrad.py": (
        ("adagrad_update", "_sparse_adagrad", "Adagrad._init_state", "Adagrad._update"),
        (("impl:Adagrad", "Adagrad"),),
    ),
    "impl/rmsprop.py": (
        ("rmsprop_update", "RMSprop._init_state", "RMSprop._update"),
        (("impl:RMSprop", "RMSprop"),),
    ),
}

# Each mutant's audit, cheapest first, stopping at the first failure (-x): a quick pass with
# Hypothesis's dev counts at a fixed seed kills most mutants in seconds; a mutant it passes is
# judged by the audit's own default, the derandomized ci profile. Two dtypes: float32, and
# bfloat16 for the half-precision roundings. ``errors`` is kept (a mutant that changes how NaN
# and infinity propagate is a bug); ``torch`` only reports distances under ulp, so it is skipped.
STAGES = (("dev", "--hypothesis-seed=0"), ("ci",))
DTYPES = ("float32", "bfloat16")
DESELECT = "not test_matches_torch"
TIMEOUT_S = 600.0  # per mutant, all stages (a mutant that loops forever is a timeout, not a kill)


def step_lines(path: Path, functions) -> list[str]:
    """The line ranges ("first-last") of ``functions`` in ``path``, docstrings excluded."""
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    found[f"{node.name}.{item.name}"] = item
    missing = [f for f in functions if f not in found]
    if missing:
        raise SystemExit(f"{path}: no function {missing[0]!r} (update SCOPE in {__file__})")
    ranges = []
    for name in functions:
        body = found[name].body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring: mutating it changes nothing
        ranges.append(f"{body[0].lineno}-{found[name].end_lineno}")
    return ranges


def judge(file: str) -> int:
    """Exit 0 if every audit of ``file``'s classes passes (the mutant survives), 1 otherwise."""
    for stage in STAGES:
        for target, entry in SCOPE[file][1]:
            command = [
                sys.executable,
                "-m",
                "conformance",
                "audit",
                target,
                f"--like={entry}",
                "--contract=ulp",
                "--dtypes",
                *DTYPES,
                f"--profile={stage[0]}",
                "--shrink-seconds=0",
                "--report=mutation-audit",
                "-x",
                "-q",
                "-p",
                "no:randomly",
                "-p",
                "no:xdist",
                "-k",
                DESELECT,
                *stage[1:],
            ]
            if subprocess.run(command, env=_single_threaded()).returncode != 0:
                return 1
    return 0


def _single_threaded() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("HYPOTHESIS_PROFILE", None)
    return env


def _copy_tree(scratch: Path) -> Path:
    """The work tree (as it is, uncommitted edits included) without virtualenvs and outputs."""
    tree = scratch / "tree"
    ignore = shutil.ignore_patterns(
        ".git", ".venv", ".nox", "reports", "__pycache__", ".hypothesis", "*.egg-info", "mutants"
    )
    shutil.copytree(ROOT, tree, ignore=ignore)
    return tree


def _config(file: str, lines: list[str]) -> str:
    command = f"{sys.executable} tools/mutation.py judge {file}"
    ranges = ", ".join(json.dumps(r) for r in lines)
    return (
        "[cosmic-ray]\n"
        f'module-path = "{file}"\n'
        f"timeout = {TIMEOUT_S}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n\n'
        "[cosmic-ray.filters.line-filter.lines]\n"
        f'"{file}" = [{ranges}]\n'
    )


def _tool(name: str) -> str:
    """A cosmic-ray console script: beside this interpreter (nox's venv) or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install cosmic-ray (tools/mutation-constraints.txt)")
    return found


def run_file(tree: Path, file: str, max_mutants: int | None) -> dict:
    lines = step_lines(tree / file, SCOPE[file][0])
    work = tree / ".mutation" / Path(file).stem
    work.mkdir(parents=True)
    config, session = work / "config.toml", work / "session.sqlite"
    config.write_text(_config(file, lines))
    subprocess.run([_tool("cosmic-ray"), "init", str(config), str(session)], cwd=tree, check=True)
    subprocess.run(
        [_tool("cr-filter-lines"), "--config", str(config), str(session)], cwd=tree, check=True
    )
    if max_mutants is not None:
        _keep_first(session, max_mutants)
    started = time.monotonic()
    baseline = subprocess.run([_tool("cosmic-ray"), "baseline", str(config)], cwd=tree)
    baseline_s = time.monotonic() - started
    if baseline.returncode != 0:
        raise SystemExit(f"{file}: the unmutated audit fails; no mutant can be judged")
    started = time.monotonic()
    subprocess.run([_tool("cosmic-ray"), "exec", str(config), str(session)], cwd=tree, check=True)
    exec_s = time.monotonic() - started
    dumped = subprocess.run(
        [_tool("cosmic-ray"), "dump", str(session)],
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return _summary(file, lines, dumped, baseline_s, exec_s)


_KEEP_FIRST = """
import sys
from cosmic_ray.work_db import use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult

with use_db(sys.argv[1]) as db:
    pending = sorted(db.pending_work_items, key=lambda i: i.job_id)
    skipped = [i.job_id for i in pending[int(sys.argv[2]):]]
    if skipped:
        db.set_multiple_results(
            skipped, WorkResult(output="trial", worker_outcome=WorkerOutcome.SKIPPED)
        )
"""


def _keep_first(session: Path, n: int) -> None:
    """A trial on a small scope: skip all but the first ``n`` pending mutants (run by
    cosmic-ray's own interpreter, which may not be this one)."""
    python = Path(_tool("cosmic-ray")).parent / "python"
    subprocess.run([str(python), "-c", _KEEP_FIRST, str(session), str(n)], check=True)


def _summary(file, lines, dumped: str, baseline_s: float, exec_s: float) -> dict:
    """Counts per outcome, and every survivor and timeout with its operator, line and diff."""
    counts = {"killed": 0, "survived": 0, "timeout": 0, "incompetent": 0, "skipped": 0}
    kept = []
    for row in filter(None, dumped.splitlines()):
        item, result = json.loads(row)
        if result is None:
            continue
        outcome = _outcome(result)
        counts[outcome] += 1
        if outcome in ("survived", "timeout"):
            mutation = item["mutations"][0]
            kept.append(
                {
                    "outcome": outcome,
                    "job_id": item["job_id"],
                    "operator": mutation["operator_name"],
                    "occurrence": mutation["occurrence"],
                    "line": mutation["start_pos"][0],
                    "diff": result.get("diff", ""),
                }
            )
    judged = counts["killed"] + counts["survived"] + counts["timeout"]
    return {
        "file": file,
        "audits": [f"{t} --like {e}" for t, e in SCOPE[file][1]],
        "lines": lines,
        "counts": counts,
        "seconds": {
            "baseline": round(baseline_s, 1),
            "exec": round(exec_s, 1),
            "per_mutant": round(exec_s / judged, 1) if judged else None,
        },
        "survivors": kept,
    }


def _outcome(result: dict) -> str:
    """cosmic-ray's verdict, with its timeouts (reported as kills, output "timeout") apart."""
    worker, test = result.get("worker_outcome"), result.get("test_outcome")
    if worker in ("skipped", "no-test"):
        return "skipped"
    if worker in ("exception", "abnormal") or test == "incompetent":
        return "incompetent"
    if test == "killed" and result.get("output") == "timeout":
        return "timeout"
    return "survived" if test == "survived" else "killed"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/mutation.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="mutate, judge, write reports/mutation.json")
    run.add_argument("files", nargs="*", help=f"default: all of {', '.join(SCOPE)}")
    run.add_argument("--max-mutants", type=int, help="per file: a trial on the first N mutants")
    run.add_argument("--out", type=Path, default=ROOT / "reports" / "mutation.json")
    one = commands.add_parser("judge", help="the per-mutant command: audit FILE's classes")
    one.add_argument("file", choices=list(SCOPE))
    args = parser.parse_args(argv)
    if args.command == "judge":
        return judge(args.file)
    unknown = [f for f in args.files if f not in SCOPE]
    if unknown:
        parser.error(f"{unknown[0]} is not in the scope: {', '.join(SCOPE)}")
    with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
        tree = _copy_tree(Path(scratch))
        files = [run_file(tree, f, args.max_mutants) for f in args.files or SCOPE]
    judged = sum(f["counts"][k] for f in files for k in ("killed", "survived", "timeout"))
    killed = sum(f["counts"]["killed"] for f in files)
    report = {
        "tool": "cosmic-ray",
        "judge": "python -m conformance audit TARGET --like ENTRY --contract ulp --dtypes "
        f"{' '.join(DTYPES)} -x -k '{DESELECT}', stages {[s[0] for s in STAGES]}",
        "killed": killed,
        "judged": judged,
        "files": files,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"mutation: {killed}/{judged} killed; survivors in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
