"""The ``torch`` check: the subject and torch.optim from the same state on the same gradients."""

from __future__ import annotations

import math

from conformance.core.case import Case
from conformance.core.judge import Context, explained
from conformance.core.running import compare_runs
from conformance.subject import torch_reference


@explained
def matches_torch(subject, case: Case) -> float:
    """The subject and torch.optim from the same state on the same gradients: params and every
    state tensor after every step. ``bitwise`` contract: equal bit for bit (unless
    ``entry.torch_ulp`` declares a bound); ``ulp`` contract: the distance to torch's for-loop
    path is returned for the report, never judged. The subject's own flags are not compared."""
    reference = torch_reference(subject)
    torch_foreach = subject.reference_foreach(case)
    path = "foreach" if torch_foreach else "for-loop"
    ctx = Context("torch", subject, case, f"torch.optim.{subject.entry.torch_name} ({path} path)")
    bound = subject.entry.torch_ulp.get(case.dtype, 0) if subject.bitwise else math.inf
    return compare_runs(
        ctx,
        case,
        (subject, case.foreach, case),
        (reference, torch_foreach, case),
        bound,
        subject.own_flags,
        # ulp: how bad input is refused is the errors check's; bitwise against a named path:
        # whatever path the subject runs, it promised that path's behaviour
        judge_errors=subject.bitwise and ("always" if subject.reference != "matching" else True),
    )
