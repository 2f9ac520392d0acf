"""Sessions: ``tests`` (unit tests), ``conformance`` (the CPU x CUDA matrix),
``conformance-fused`` (impl's fused=True kernels through the same checks), ``audit``
(torch.optim's own foreach and fused paths through the same checks), ``conformance-explore``
(random seed, thorough counts, a database on disk), ``report`` (merges the slice reports of a
matrix run on several machines: ``conformance -- --splits N --group K``), ``lint``, ``figures``,
``bench``, ``mutation`` (the ``ulp`` audit's mutation score on impl; not a default session).

Every session installs torch through ``constraints.txt`` so that pip takes the
torch 2.13.0 build the parity claims were measured against (on these machines a
local CPU wheel) instead of resolving a multi-GB CUDA build.  Anything after
``--`` goes to pytest.
"""

import random
import shutil
import subprocess

import nox

nox.options.default_venv_backend = "virtualenv"  # uv ignores the local torch wheel
nox.options.sessions = ["tests", "conformance", "lint"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")
# Two xdist workers on two cores: one BLAS/OpenMP thread each avoids oversubscription.
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _install(session: nox.Session, extras: str) -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit tests of impl, specs and conformance (including the planted-bug meta-tests)."""
    _install(session, "test")
    # loadgroup: tests/test_distributed.py's gloo pools stay on one worker (xdist_group)
    session.run(
        "pytest",
        "tests",
        "-n",
        "auto",
        "--dist",
        "loadgroup",
        *session.posargs,
        env=SINGLE_THREADED,
    )


def _no_gpu_reason() -> str | None:
    """Why this machine cannot run CUDA, told without torch (nox's own environment has none), so
    that the cuda sessions skip before they build a virtualenv and install torch for nothing."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no NVIDIA GPU: nvidia-smi is not on PATH (CUDA is not verified on this machine)"
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
    if listed.returncode != 0 or "GPU" not in listed.stdout:
        return f"no NVIDIA GPU: `nvidia-smi -L` lists none ({listed.stderr.strip()[:120]})"
    return None


NO_GPU = _no_gpu_reason()
# (python, device): python=False builds no virtualenv, for a cuda session that will only skip
DEVICES = nox.parametrize(
    ("python", "device"),
    [(PYTHON, "cpu"), (False if NO_GPU else PYTHON, "cuda")],
    ids=["device='cpu'", "device='cuda'"],
)


def _skip_without_gpu(session: nox.Session, device: str) -> None:
    if device == "cuda" and NO_GPU:
        session.skip(NO_GPU)


@nox.session
@DEVICES
def conformance(session: nox.Session, device: str) -> None:
    """Every registry entry on one device: impl vs torch.optim, vs its spec, and invariants.

    Writes reports/conformance.{json,md} (rows of the other device are kept), prints the
    table, and draws the figures (plots) from it. The Hypothesis profile defaults
    to ``ci``; a later ``-- --hypothesis-profile=NAME`` wins. Without a GPU the cuda session's
    tests and rows are skips, with the reason.

    ``-- --splits N --group K`` runs one of N slices balanced by conformance/durations.json and
    writes reports/conformance.slice-K-of-N.json instead (``nox -s report`` merges them); the
    figures are then left to whoever merges, since one slice's table is not the matrix.
    """
    _skip_without_gpu(session, device)
    _install(session, "harness,plot")
    try:
        session.run(
            "pytest",
            "conformance",
            "-n",
            "auto",
            f"--device={device}",
            "--hypothesis-profile=ci",
            "-rfE",  # the summary and reports/ list the skips with their reasons
            *session.posargs,
            env=SINGLE_THREADED,
        )
    finally:  # draw the pictures of a failing run too: that is when the red cells matter
        if not _sliced(session.posargs):
            session.run("python", "-m", "plots", "--out", "reports")


def _sliced(args) -> bool:
    return any(a == "--splits" or a.startswith("--splits=") for a in args)


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """Merge the slice reports of a matrix run on several machines into one report.

    Reads reports/NAME.slice-K-of-N.json (``conformance -- --splits N --group K``, one per CI
    machine) and writes reports/NAME.{json,md}; fails, naming the files, on slices of different
    commits, profiles or split counts, and on a missing or duplicate group.
    ``-- --dir DIR --name NAME`` to read elsewhere.
    """
    _install(session, "harness")
    session.run("python", "-m", "conformance", "report", *session.posargs)


@nox.session(python=PYTHON)
def distributed(session: nox.Session) -> None:
    """impl on DTensor params of a 2-rank gloo mesh of CPU processes: the ``distributed`` check
    of every registry entry (``--device=cpu-gloo-2``; its rows join reports/conformance.json),
    then the integrations (fully_shard, ZeroRedundancyOptimizer, distributed checkpoints) in
    tests/test_distributed.py. One pytest process drives the ranks (no xdist: the two ranks
    already take the two cores)."""
    _install(session, "test")
    session.run(
        "pytest",
        "conformance/test_distributed.py",
        "tests/test_distributed.py",
        "-n",
        "0",
        "--device=cpu-gloo-2",
        "--hypothesis-profile=ci",
        *session.posargs,
        env=SINGLE_THREADED,
    )


@nox.session(python=PYTHON, name="conformance-fused")
def conformance_fused(session: nox.Session) -> None:
    """impl's own fused=True kernels (the ``fast`` extra) through every check of the matrix, CPU,
    under the ``ulp`` contract (within the spec's derived bound; the distance to torch's
    for-loop path reported): writes reports/fused.{json,md}."""
    _install(session, "harness,plot,fast")
    session.run(
        "pytest",
        "conformance",
        "-n",
        "auto",
        "--device=cpu",
        "--hypothesis-profile=ci",
        "--conformance-suite=impl-fused",
        "--conformance-report=fused",
        *session.posargs,
        env=SINGLE_THREADED,
    )


@nox.session(python=PYTHON, name="conformance-explore")
def conformance_explore(session: nox.Session) -> None:
    """The CPU matrix with a random seed (printed), the ``explore`` profile (``thorough``'s
    example counts, a Hypothesis database under .hypothesis/ kept between runs), so each run looks
    somewhere new. ``-- --hypothesis-seed=N`` replays a seed. CI stays on the derandomized ``ci``.
    """
    _install(session, "harness,plot")
    seed = next(
        (a.split("=", 1)[1] for a in session.posargs if a.startswith("--hypothesis-seed=")), None
    )
    seed = seed or str(random.SystemRandom().randrange(2**32))
    session.log(f"conformance-explore: --hypothesis-seed={seed}")
    args = [a for a in session.posargs if not a.startswith("--hypothesis-seed=")]
    session.run(
        "pytest",
        "conformance",
        "-n",
        "auto",
        "--device=cpu",
        "--hypothesis-profile=explore",
        f"--hypothesis-seed={seed}",
        "--conformance-report=explore",
        *args,
        env=SINGLE_THREADED,
    )


@nox.session
@DEVICES
def audit(session: nox.Session, device: str) -> None:
    """torch.optim itself under the ``ulp`` contract: every entry's class with foreach=True, and
    with fused=True where torch offers it. Writes reports/audit.{json,md} and audit_heat.png."""
    _skip_without_gpu(session, device)
    _install(session, "harness,plot")
    try:
        session.run(
            "python",
            "-m",
            "conformance",
            "audit",
            "--suite=torch",
            f"--devices={device}",
            "--profile=ci",
            "--workers=auto",
            "--shrink-seconds=5",  # many failures: each shrunk for at most 5 s
            *session.posargs,
            env=SINGLE_THREADED,
        )
    finally:
        session.run(
            "python",
            "-m",
            "plots",
            "--out",
            "reports",
            "--report",
            "reports/audit.json",
            "--report-only",
        )


@nox.session(python=PYTHON)
def mutation(session: nox.Session) -> None:
    """Mutation score of the ``ulp`` audit on impl's step code (cosmic-ray, pinned in
    tools/mutation-constraints.txt): each mutant of Adam/AdamW, SGD, Adagrad and RMSprop is judged
    by ``python -m conformance audit impl:CLASS --contract ulp``. Writes reports/mutation.json;
    docs/mutation.md reads it. Not a default session, not in CI (hours on two cores). ``--
    impl/sgd.py --max-mutants 5``: one file, its first mutants (a trial)."""
    _install(session, "harness")
    session.install("-c", "tools/mutation-constraints.txt", "cosmic-ray")
    session.run("python", "tools/mutation.py", "run", *session.posargs, env=SINGLE_THREADED)


@nox.session(python=PYTHON)
def figures(session: nox.Session) -> None:
    """The seed's experiment corrected, and the conformance report, as PNGs under reports/.

    ``nox -s figures -- --docs-img docs/img/seed-corrected.png`` also refreshes the README picture.
    """
    _install(session, "harness,plot")
    session.run("python", "-m", "plots", "--out", "reports", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """impl/torch.optim step-time ratios (fused kernels, for-loop path), first-call and memory
    costs, measured interleaved in one run; prints them and writes reports/bench.json. Asserts
    nothing."""
    _install(session, "harness,fast")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, and import-linter's contracts ([tool.importlinter] in pyproject.toml): the harness's
    layers import only downwards, and impl and specs never import the harness."""
    session.install(*CONSTRAINTS, "ruff", "import-linter>=2.0", "-e", ".[harness]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")
