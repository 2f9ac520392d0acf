"""The ``ulp`` audit judges by the math: correct optimizers written in other op orders pass it,
and optimizers with bugs that users of optimizer libraries have reported fail it, each with a
shrunk example whose plain-torch reproduction replays the disagreement.

The subjects are in tests/_realistic_optimizers.py (textbook statements, not torch's op
sequence; each buggy one is a correct one with one method overridden). Each audit runs in a
subprocess through ``conformance.audit.pytest_args`` (what ``audit()`` and ``python -m
conformance audit`` run), with a plugin that keeps each failure's full message.

A buggy subject's audit stops at its first failure (``-x``), in one dtype, without the two
checks that judge no step on valid input under ``ulp``: ``errors`` (bad input) and ``torch``
(the distance to torch.optim, reported only). Which check caught each bug is in
tests/README.md.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = "tests._realistic_optimizers"

# one audit in a subprocess; argv: the audit's options and extra pytest arguments (JSON), the
# file to write the failures to. The plugin keeps each failing test's whole exception message
# (a Hypothesis ExceptionGroup's first sub-exception).
_DRIVER = """
import json, sys
import pytest
from conformance.audit import pytest_args

class Failures:
    found = []

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        rep = yield
        if rep.failed and call.excinfo is not None:
            e = call.excinfo.value
            while isinstance(e, BaseExceptionGroup):
                e = e.exceptions[0]
            self.found.append({"test": item.nodeid, "message": str(e)})
        return rep

options, extra, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
code = pytest.main(pytest_args(**options) + extra, plugins=[Failures()])
with open(out, "w") as f:
    json.dump({"exit": int(code), "failures": Failures.found}, f)
"""


def _env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HYPOTHESIS_PROFILE", None)  # the audit's own default, the derandomized ci profile
    return env


def _audit(tmp_path: Path, cls: str, like: str, dtypes, without=(), extra=()) -> dict:
    """The audit of ``MODULE:cls`` as ``like`` under ``ulp``: pytest's exit code, each failure's
    test id and message, and pytest's output tail."""
    options = {
        "target": f"{MODULE}:{cls}",
        "like": like,
        "contract": "ulp",
        "dtypes": list(dtypes),
        "shrink_seconds": 5,
    }
    if without:
        options["without"] = list(without)
    out = tmp_path / "failures.json"
    args = [*extra, f"--rootdir={tmp_path}", "-p", "no:xdist", "-p", "no:randomly", "-q"]
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(options), json.dumps(args), str(out)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    result = json.loads(out.read_text()) if out.exists() else {"exit": None, "failures": []}
    result["output"] = (done.stdout + done.stderr)[-4000:]
    return result


# (test id, class, registry entry, capabilities it lacks)
CORRECT = [
    ("adam-textbook-foreach", "TextbookAdam", "Adam", ()),
    ("adamw-paper-for-loop-only", "TextbookAdamW", "AdamW", ()),
    ("sgd-heavy-ball", "TextbookSGD", "SGD", ()),
    ("sgd-nesterov", "TextbookSGD", "SGD-nesterov", ()),
    ("adagrad-dense-only", "DenseAdagrad", "Adagrad", ("sparse",)),
    ("rmsprop", "TextbookRMSprop", "RMSprop", ()),
]


@pytest.mark.parametrize(
    ("cls", "like", "without"), [c[1:] for c in CORRECT], ids=[c[0] for c in CORRECT]
)
def test_correct_passes(tmp_path, cls, like, without):
    result = _audit(tmp_path, cls, like, ("float32", "bfloat16"), without)
    failures = "\n".join(
        f"{f['test']}:\n  {f['message'].splitlines()[0]}\n  "
        + next((x for x in f["message"].splitlines() if x.startswith("  at ")), "")
        for f in result["failures"]
    )
    assert result["exit"] == 0, (
        f"a correct {like} ({cls}) failed its ulp audit (exit {result['exit']}):\n"
        f"{failures or result['output']}"
    )


# (test id, class, registry entry, dtype, capabilities it lacks)
BUGGY = [
    ("adamw-decay-after-step", "DecayAfterStepAdamW", "AdamW", "float32", ()),
    ("adam-bias-correction-in-half", "HalfBiasCorrectionAdam", "Adam", "bfloat16", ()),
    ("adam-schedule-off-by-one", "OffByOneScheduleAdam", "Adam", "float32", ()),
    ("adam-eps-inside-sqrt", "EpsInsideSqrtAdam", "Adam", "float32", ()),
    ("adamw-coupled-l2", "CoupledDecayAdamW", "AdamW", "float32", ()),
    ("adam-amsgrad-max-of-v-hat", "MaxOfVHatAdam", "Adam", "bfloat16", ()),
    ("adam-maximize-negates-update", "NegatedUpdateMaximizeAdam", "Adam", "float32", ()),
    ("adam-step-not-in-state-dict", "StepNotSavedAdam", "Adam", "float32", ()),
    ("sgd-nesterov-sign", "NesterovSignSGD", "SGD-nesterov", "float32", ()),
    ("sgd-dampened-first-step", "DampenedFirstStepSGD", "SGD", "float32", ()),
    ("sgd-writes-grad", "GradWritingSGD", "SGD", "float32", ()),
    ("rmsprop-centered-uncentered", "UncenteredRMSprop", "RMSprop", "float32", ()),
    ("rmsprop-abs-second-moment", "AbsSecondMomentRMSprop", "RMSprop", "float32", ()),
    ("adagrad-lr-decay-off-by-one", "LrDecayOffByOneAdagrad", "Adagrad", "bfloat16", ("sparse",)),
]

# the checks that judge no step on valid input under ulp: bad input, and the reported distance
_VALID_INPUT_CHECKS = ["-x", "-k", "not test_errors_like_reference and not test_matches_torch"]


@pytest.mark.parametrize(
    ("cls", "like", "dtype", "without"), [b[1:] for b in BUGGY], ids=[b[0] for b in BUGGY]
)
def test_buggy_is_caught(tmp_path, record_property, cls, like, dtype, without):
    result = _audit(tmp_path, cls, like, (dtype,), without, _VALID_INPUT_CHECKS)
    assert result["exit"] == 1 and result["failures"], (
        f"the ulp audit passed {cls} (exit {result['exit']}):\n{result['output']}"
    )
    message = result["failures"][0]["message"]
    # for tests/README.md's table (--junitxml): the check that caught it, and where
    record_property("caught", "\n".join(message.splitlines()[:4]))
    assert message.startswith(tuple(f"{c}: {MODULE}.{cls}" for c in _CHECK_NAMES)), message
    plain = message.split("Reproduce in plain torch:\n", 1)[1].split("Reproduce without")[0]
    _assert_replays(tmp_path, plain, message)


_CHECK_NAMES = (
    "spec",
    "spec_trajectory",
    "maximize",
    "state_dict_roundtrip",
    "grad_untouched",
    "deterministic",
    "memory_safety",
    "nesterov_lookahead",
)

# after the plain-torch snippet: every param, its gradient and state of each run, as JSON
_DUMP = """
import json
def _values(t):
    return None if t is None else t.detach().to_dense().double().tolist()
def _dump(params, opt):
    return {
        "params": [_values(p) for p in params],
        "grads": [_values(p.grad) for p in params],
        # per param, in the params' order: a param without a gradient has no state
        "state": [{k: _values(v) for k, v in opt.state.get(p, {}).items() if torch.is_tensor(v)}
                  for p in params],
    }
runs = {n: _dump(globals()[n + "_params"], globals()[n + "_opt"])
        for n in "ab" if n + "_params" in globals()}
print("DUMP" + json.dumps(runs))
"""


def _assert_replays(tmp_path: Path, indented: str, message: str) -> None:
    """The plain-torch snippet, run in a fresh interpreter, shows the disagreement: two runs that
    differ, or the value the harness judged at the element it names."""
    script = "\n".join(line[4:] for line in indented.splitlines()) + _DUMP
    assert "conformance" not in script.replace(MODULE, ""), "the snippet imports the harness"
    (tmp_path / "replay.py").write_text(script)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "replay.py")],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"the plain-torch snippet raised:\n{done.stderr[-3000:]}"
    runs = json.loads(done.stdout.rsplit("DUMP", 1)[1])
    if "b" in runs:
        assert runs["a"] != runs["b"], f"the two runs replay equal:\n{done.stdout[-3000:]}"
        return
    judged = _judged(message)
    assert judged is not None, f"no element and value to replay in:\n{message[:1500]}"
    where, element, value = judged
    replayed = _lookup(runs["a"], where, element)
    assert replayed == value or (math.isnan(value) and math.isnan(replayed)), (
        f"the snippet gives {replayed!r} at {where} element {element}, the harness saw "
        f"{value!r}:\n{done.stdout[-3000:]}"
    )


# "at param 1 state 'exp_avg': element (0, 2): expected 0.5 (...), actual 0.625, ..."
_AT = re.compile(
    r"^  at (?:step \d+, )?(?:after step \d+, )?(?P<what>[^:]*): element \((?P<idx>[\d, ]*)\): "
    r"expected (?P<expected>[^ ,]+).*?, actual (?P<actual>[^ ,]+)",
    re.M,
)
# the check whose one run is the reference, not the subject's judged run
_SHOWS_EXPECTED = ("state_dict_roundtrip",)


def _judged(message: str):
    """(where, element index, value) of the element a one-run failure names;
    the value of the run the snippet shows (the subject's, or the reference's)."""
    m = _AT.search(message)
    if m is None:
        return None
    side = "expected" if message.startswith(_SHOWS_EXPECTED) else "actual"
    return m["what"], tuple(int(i) for i in m["idx"].split(",") if i.strip()), _number(m[side])


def _number(text: str) -> float:
    """A value as the message shows it: ``0.5``, ``nan``, ``np.float64(0.5)``."""
    return float(re.sub(r"^np\.\w+\((.*)\)$", r"\1", text))


def _lookup(run: dict, where: str, element: tuple) -> float:
    """The dumped value of ``where`` ("param 1", "param 1 state 'exp_avg'", "state[1]['exp_avg']",
    "grad of param 1") at ``element`` (indices into the param's shape)."""
    m = re.search(r"state\[(\d+)\]|param (\d+)", where)
    i = int(m.group(1) or m.group(2))
    key = re.search(r"state(?:\[\d+\])? ?\[?'(\w+)'", where)
    if where.startswith("grad of"):
        values = run["grads"][i]
    elif key:
        values = run["state"][i][key.group(1)]
    else:
        values = run["params"][i]
    for k in element:
        values = values[k]
    return values
