"""L-BFGS with an optional strong-Wolfe line search: a drop-in for ``torch.optim.LBFGS``.

Unlike the other optimizers here, L-BFGS works on one flat vector made of every parameter (complex
ones as their real/imaginary pairs), calls the closure several times per ``step`` and keeps global
state (stored, as in torch, on the first parameter). It therefore subclasses
``torch.optim.Optimizer`` directly instead of ``impl._base.VerifiedOptimizer``.

The math is written here as small public functions (``two_loop_direction``,
``update_curvature_pairs``, ``cubic_interpolate``, ``strong_wolfe``). Each performs the same
tensor and Python-float operations, in the same order and on the same types, as torch 2.13's
``lbfgs.py``, so parameters, state and the sequence of closure calls are bitwise identical.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from impl._base import check_tensor_lr, to_scalar
from impl._dtensor import full, laid_out_as
from impl._ops import is_dtensor

__all__ = [
    "LBFGS",
    "cubic_interpolate",
    "strong_wolfe",
    "two_loop_direction",
    "update_curvature_pairs",
]

# Curvature threshold: a pair (s, y) enters the history only if y·s > CURVATURE_EPS, which keeps
# the inverse-Hessian approximation positive definite (torch's constant).
CURVATURE_EPS = 1e-10


# -- the flat vector ----------------------------------------------------------------------------
def gather_flat_grad(params: list[Tensor]) -> Tensor:
    """All gradients as one new 1-d tensor: a missing gradient is zeros, a sparse one is made
    dense, a complex one is its real/imaginary pairs (``view_as_real``)."""
    views = []
    for p in params:
        if p.grad is None:
            view = (
                torch.zeros(p.numel(), dtype=p.dtype) if is_dtensor(p) else p.new(p.numel()).zero_()
            )
        elif p.grad.is_sparse:
            view = p.grad.to_dense().view(-1)
        else:  # a DTensor's gradient gathered whole (impl._dtensor): every rank holds the vector
            view = full(p.grad).view(-1)
        if torch.is_complex(view):
            view = torch.view_as_real(view).view(-1)
        views.append(view)
    return torch.cat(views, 0)


def flat_numel(params: list[Tensor]) -> int:
    """Length of the flat vector: complex parameters count twice."""
    return sum(2 * p.numel() if torch.is_complex(p) else p.numel() for p in params)


def add_flat_(params: list[Tensor], step_size, update: Tensor, expected_numel: int) -> None:
    """``params += step_size * update`` with ``update`` split back into the parameters' shapes
    (one ``add_`` per parameter, as torch: the same single rounding per element)."""
    offset = 0
    for p in params:
        if torch.is_complex(p):
            p = torch.view_as_real(p)
        numel = p.numel()
        part = update[offset : offset + numel].view(p.shape)
        if is_dtensor(p):  # this rank's elements of the flat update, added to its shard
            p.to_local().add_(laid_out_as(part, p).to_local(), alpha=step_size)
        else:
            p.add_(part, alpha=step_size)
        offset += numel
    # torch caches the length on the first step; a parameter resized later fails here
    if offset != expected_numel:
        raise AssertionError(f"Expected offset {offset} to equal {expected_numel}")


def clone_params(params: list[Tensor]) -> list[Tensor]:
    return [p.clone(memory_format=torch.contiguous_format) for p in params]


def set_params_(params: list[Tensor], values: list[Tensor]) -> None:
    for p, value in zip(params, values, strict=True):
        p.copy_(value)


# -- the quasi-Newton direction -----------------------------------------------------------------
def update_curvature_pairs(
    old_dirs: list[Tensor],
    old_stps: list[Tensor],
    ro: list,
    y: Tensor,
    s: Tensor,
    history_size: int,
    H_diag,
):
    """Append the pair (y, s) = (g_k - g_{k-1}, x_k - x_{k-1}) to the history, in place, if it
    satisfies the curvature condition y·s > 1e-10, dropping the oldest pair when the history
    holds ``history_size``; ``ro`` gets 1 / (y·s). Returns the scale of the initial inverse
    Hessian, y·s / y·y for an accepted pair, else ``H_diag`` unchanged.

    As torch, the history is full when its length *equals* ``history_size``: with
    ``history_size=0`` the first accepted pair pops from an empty list (IndexError).
    """
    ys = y.dot(s)
    if ys > CURVATURE_EPS:
        if len(old_dirs) == history_size:
            old_dirs.pop(0)
            old_stps.pop(0)
            ro.pop(0)
        old_dirs.append(y)
        old_stps.append(s)
        ro.append(1.0 / ys)
        H_diag = ys / y.dot(y)
    return H_diag


def two_loop_direction(
    grad: Tensor,
    old_dirs: list[Tensor],
    old_stps: list[Tensor],
    ro: list,
    H_diag,
    al: list | None = None,
) -> Tensor:
    """The L-BFGS direction -H·g by the two-loop recursion, H the inverse-Hessian approximation
    built from ``H_diag``·I and the pairs (y_i, s_i) = (old_dirs[i], old_stps[i]),
    ro_i = 1/(y_i·s_i).

    First loop, newest pair first: a_i = ro_i s_i·q, q -= a_i y_i (from q = -g); then
    r = H_diag·q, and second loop, oldest first: b_i = ro_i y_i·r, r += (a_i - b_i) s_i.
    ``al`` receives the a_i (torch keeps that list in the optimizer state); a fresh list if None.
    """
    num_old = len(old_dirs)
    al = [None] * num_old if al is None else al
    q = grad.neg()
    for i in range(num_old - 1, -1, -1):
        al[i] = old_stps[i].dot(q) * ro[i]
        q.add_(old_dirs[i], alpha=-al[i])
    r = torch.mul(q, H_diag)
    for i in range(num_old):
        be_i = old_dirs[i].dot(r) * ro[i]
        r.add_(old_stps[i], alpha=al[i] - be_i)
    return r


# -- the line search ----------------------------------------------------------------------------
def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clamped to
    ``bounds`` (default: the interval between x1 and x2); the interval's midpoint when the cubic
    has no real critical point (d1² < g1·g2). Port of minFunc's ``polyinterp``.

    With d1 = g1 + g2 - 3(f1 - f2)/(x1 - x2) and d2 = sqrt(d1² - g1·g2), the minimiser is
    x2 - (x2 - x1)(g2 + d2 - d1)/(g2 - g1 + 2 d2), written from the larger of x1 and x2.
    Arguments mix Python numbers and 0-d tensors exactly as torch's, so the result has the same
    type and bits (``g1``/``g2`` are tensors, so ``d2_square`` is one).
    """
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)

    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = d2_square.sqrt()
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    # no real minimiser (also the NaN a degenerate bracket gives): bisect
    return (xmin_bound + xmax_bound) / 2.0


def strong_wolfe(
    obj_func: Callable,
    x: list[Tensor],
    t,
    d: Tensor,
    f: float,
    g: Tensor,
    gtd,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
):
    """A step t along ``d`` from ``x`` satisfying the strong Wolfe conditions

        f(x + t d) <= f + c1 t g·d  (sufficient decrease)   and   |g(x + t d)·d| <= -c2 g·d,

    or the best point found within the evaluation budget. ``obj_func(x, t, d)`` returns the loss
    (a float) and flat gradient at x + t d. ``gtd`` is g·d at t = 0 (negative).

    Bracketing: try t, extrapolating by cubic interpolation within [t + 0.01 (t - t_prev), 10 t],
    until an interval must contain an acceptable step (Armijo fails, f stops decreasing, or the
    slope turns non-negative). Zoom: shrink the bracket by cubic interpolation, moving a trial
    too close to an end (twice in a row, or outside) to 10% of the bracket's length inside it,
    until the conditions hold, the bracket is shorter than ``tolerance_change`` (scaled by
    max|d|) or ``max_ls`` evaluations after the first have been spent.

    Returns ``(f_new, g_new, t, ls_func_evals)``; ls_func_evals can be ``max_ls + 1``.
    """
    d_norm = d.abs().max()
    g = g.clone(memory_format=torch.contiguous_format)
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = g_new.dot(d)

    # -- bracketing phase
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    bracket = bracket_f = bracket_g = bracket_gtd = None
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new.clone(memory_format=torch.contiguous_format)]
            bracket_gtd = [gtd_prev, gtd_new]
            break

        if abs(gtd_new) <= -c2 * gtd:
            bracket = [t]
            bracket_f = [f_new]
            bracket_g = [g_new]
            done = True
            break

        if gtd_new >= 0:
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new.clone(memory_format=torch.contiguous_format)]
            bracket_gtd = [gtd_prev, gtd_new]
            break

        # extrapolate: the next trial lies beyond t, by at least 1% of the last step
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = cubic_interpolate(
            t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step)
        )

        t_prev = tmp
        f_prev = f_new
        g_prev = g_new.clone(memory_format=torch.contiguous_format)
        gtd_prev = gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1

    # budget spent while extrapolating: the bracket is [0, last t] (no slopes needed, the zoom
    # loop cannot run)
    if ls_iter == max_ls:
        bracket = [0, t]
        bracket_f = [f, f_new]
        bracket_g = [g, g_new]

    if bracket_f is None:
        # max_ls < 0 (max_eval below the evaluations already made): torch reads its unset
        # bracket here and raises this very error.
        raise UnboundLocalError(
            "cannot access local variable 'bracket_f' where it is not associated with a value"
        )

    # -- zoom phase
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break

        t = cubic_interpolate(
            bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]
        )

        # a trial within 10% of an end makes little progress: allowed once, then (or when it
        # is at or beyond an end) moved to 10% inside the nearer end
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # no sufficient decrease, or not below the low end: t becomes the high end
            bracket[high_pos] = t
            bracket_f[high_pos] = f_new
            bracket_g[high_pos] = g_new.clone(memory_format=torch.contiguous_format)
            bracket_gtd[high_pos] = gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # the slope points away from the high end: the old low end becomes the high one
                bracket[high_pos] = bracket[low_pos]
                bracket_f[high_pos] = bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]

            bracket[low_pos] = t
            bracket_f[low_pos] = f_new
            bracket_g[low_pos] = g_new.clone(memory_format=torch.contiguous_format)
            bracket_gtd[low_pos] = gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


# -- the optimizer ------------------------------------------------------------------------------
class LBFGS(Optimizer):
    r"""L-BFGS; drop-in for ``torch.optim.LBFGS`` (after minFunc).

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \theta, f(\theta) \text{ (closure)},
                K \text{ (max\_iter)}, E \text{ (max\_eval)}, m \text{ (history\_size)},
                \tau_g \text{ (tolerance\_grad)}, \tau_c \text{ (tolerance\_change)} \\
            &f \leftarrow f(\theta),\ g \leftarrow \nabla f(\theta);
                \ \textbf{if}\ \|g\|_\infty \le \tau_g\ \textbf{return} \\
            &\textbf{for}\ k = 1, \ldots, K\ \textbf{do} \\
            &\quad \textbf{if}\ \text{first iteration ever}: d \leftarrow -g,
                \ H_0 \leftarrow 1,\ \text{history} \leftarrow \emptyset \\
            &\quad \textbf{else}: y \leftarrow g - g_{prev},\ s \leftarrow t\,d;
                \ \textbf{if}\ y^\top s > 10^{-10}:
                \ \text{push } (y, s, 1/y^\top s) \text{ (keep last } m),
                \ H_0 \leftarrow y^\top s / y^\top y \\
            &\quad \qquad d \leftarrow -H g \quad \text{(two-loop recursion over the history)} \\
            &\quad g_{prev} \leftarrow g,\ f_{prev} \leftarrow f \\
            &\quad t \leftarrow \gamma \min(1, 1/\|g\|_1) \text{ on the first iteration ever,
                else } \gamma \\
            &\quad \textbf{if}\ g^\top d > -\tau_c\ \textbf{break} \\
            &\quad \textbf{if}\ \text{strong\_wolfe}: (f, g, t) \leftarrow
                \text{line search from } t \text{ with at most } E - \text{evals}
                \text{ extra trials};\ \theta \leftarrow \theta + t d \\
            &\quad \textbf{else}: \theta \leftarrow \theta + t d;
                \ \textbf{if}\ k < K: f \leftarrow f(\theta),\ g \leftarrow \nabla f(\theta) \\
            &\quad \textbf{if}\ k = K \textbf{ or evals} \ge E
                \textbf{ or } \|g\|_\infty \le \tau_g \textbf{ or } \|t d\|_\infty \le \tau_c
                \textbf{ or } |f - f_{prev}| < \tau_c\ \textbf{break} \\
       \end{aligned}

    One ``step`` runs up to ``max_iter`` iterations and returns the closure's first loss. All
    parameters form one flat vector (complex ones as real pairs, sparse gradients densified, a
    missing gradient as zeros); the state (``func_evals``, ``n_iter``, ``d``, ``t``,
    ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``, ``al``)
    lives on the first parameter and carries across steps.

    As torch: one parameter group only; ``max_eval`` defaults to ``max_iter * 5 // 4``; a step
    can call the closure more than ``max_eval`` times (``max_eval + 1`` with the line search,
    whose first trial is not counted against its budget; without it the budget is checked only
    after an iteration's evaluation, so ``max_eval`` 0 or 1 still gives two calls); ``max_eval``
    0 with ``"strong_wolfe"`` raises UnboundLocalError and ``history_size=0`` IndexError, as in
    torch. An unknown ``line_search_fn`` is refused only by a step that gets past the first
    gradient check.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        check_tensor_lr(lr)
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
        }
        super().__init__(params, defaults)

        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")

        # the group's own list: load_state_dict keeps it, so this stays the live params
        self._params = self.param_groups[0]["params"]
        self._numel_cache = None

    def _numel(self) -> int:
        # computed once, as torch: the check in add_flat_ catches params resized afterwards
        if self._numel_cache is None:
            self._numel_cache = flat_numel(self._params)
        return self._numel_cache

    def _evaluate_at(self, closure, x: list[Tensor], t, d: Tensor):
        """Loss (a float) and flat gradient at x + t d; the params are left at x."""
        add_flat_(self._params, t, d, self._numel())
        loss = float(closure())
        flat_grad = gather_flat_grad(self._params)
        set_params_(self._params, x)
        return loss, flat_grad

    @torch.no_grad()
    def step(self, closure):  # type: ignore[override]
        """Perform a single optimization step.

        Args:
            closure (Callable): A closure that reevaluates the model
                and returns the loss.
        """
        if len(self.param_groups) != 1:
            raise AssertionError(
                f"Expected exactly one param_group, but got {len(self.param_groups)}"
            )

        closure = torch.enable_grad()(closure)

        group = self.param_groups[0]
        lr = to_scalar(group["lr"])
        max_iter = group["max_iter"]
        max_eval = group["max_eval"]
        tolerance_grad = group["tolerance_grad"]
        tolerance_change = group["tolerance_change"]
        line_search_fn = group["line_search_fn"]
        history_size = group["history_size"]

        # global state, on the first param so that load_state_dict casts it with the params
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1

        flat_grad = gather_flat_grad(self._params)
        opt_cond = flat_grad.abs().max() <= tolerance_grad
        if opt_cond:
            return orig_loss

        d = state.get("d")
        t = state.get("t")
        old_dirs = state.get("old_dirs")
        old_stps = state.get("old_stps")
        ro = state.get("ro")
        H_diag = state.get("H_diag")
        prev_flat_grad = state.get("prev_flat_grad")
        prev_loss = state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # -- direction
            if state["n_iter"] == 1:
                d = flat_grad.neg()
                old_dirs = []
                old_stps = []
                ro = []
                H_diag = 1
            else:
                y = flat_grad.sub(prev_flat_grad)
                s = d.mul(t)
                H_diag = update_curvature_pairs(old_dirs, old_stps, ro, y, s, history_size, H_diag)
                # the first-loop coefficients persist in the state (created here, as in torch)
                if "al" not in state:
                    state["al"] = [None] * history_size
                d = two_loop_direction(flat_grad, old_dirs, old_stps, ro, H_diag, state["al"])

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
            else:
                prev_flat_grad.copy_(flat_grad)
            prev_loss = loss

            # -- step length: the very first iteration is scaled down to a unit-l1 gradient step
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / flat_grad.abs().sum()) * lr
            else:
                t = lr

            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:  # not a descent direction (to tolerance)
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                if line_search_fn != "strong_wolfe":
                    raise RuntimeError("only 'strong_wolfe' is supported")
                x_init = clone_params(self._params)

                def obj_func(x, t, d):
                    return self._evaluate_at(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
                )
                add_flat_(self._params, t, d, self._numel())
                opt_cond = flat_grad.abs().max() <= tolerance_grad
            else:
                add_flat_(self._params, t, d, self._numel())
                # the last iteration does not re-evaluate: its result would go unused
                if n_iter != max_iter:
                    with torch.enable_grad():
                        loss = closure()
                    loss = float(loss)
                    flat_grad = gather_flat_grad(self._params)
                    opt_cond = flat_grad.abs().max() <= tolerance_grad
                    ls_func_evals = 1

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # -- stopping tests, in torch's order
            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if d.mul(t).abs().max() <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = d
        state["t"] = t
        state["old_dirs"] = old_dirs
        state["old_stps"] = old_stps
        state["ro"] = ro
        state["H_diag"] = H_diag
        state["prev_flat_grad"] = prev_flat_grad
        state["prev_loss"] = prev_loss

        return orig_loss
