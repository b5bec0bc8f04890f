"""The grader: a student's functions against numerical derivatives and the reference, and
a hint for each known mistake it recognises.

For every function a student writes and every case of :mod:`npsenet.exercise.cases`
(random shapes and hyperparameters, float64), :func:`check_pairs`

1. runs the reference forward and draws a random upstream gradient dout (a random scalar
   for a loss), never ones: L = sum(y * dout), not sum(y);
2. computes the numerical gradient of L for every input (:func:`npsenet.gradcheck.
   numerical_gradient`); where the reference itself disagrees with it (an input within a
   step of a ReLU's kink), the case is drawn again;
3. runs the student's forward (given, so it must match the reference's output) and
   backward on a copy of dout, and compares each gradient with the numerical one and the
   reference's: max |yours - expected| / max |expected| must stay below
   :data:`TOLERANCE`; shapes must be the inputs', dout must come back unchanged;
4. runs the first case in float32: the gradients must keep the inputs' dtype.

On a failure, :func:`diagnose` looks for the known mistakes of :mod:`.mistakes`: it
computes each known-wrong variant's answer and reports the mistake when the student's
matches it, with the hint that says what to check.
"""
from __future__ import annotations

import itertools
import traceback
import types
from dataclasses import asdict, dataclass, field

import numpy as np

from ..gradcheck import numerical_gradient
from ..nn import functional
from . import composed
from .cases import CASES, AnswerError
from .mistakes import FLOAT64_FOR_FLOAT32, MISTAKES, MUTATED_DOUT, WRONG_ORDER

TOLERANCE = 1e-6
"""The largest relative error (max |yours - expected| / max |expected|) that passes."""
KINK_TOLERANCE = 1e-7
"""Where the reference differs from the numerical gradient by more, the case is redrawn."""
FORWARD_TOLERANCE = 1e-9
DRAWS = 8
MAX_MESSAGES = 3
MAX_ORDERED = 5         # up to 5! orders of the gradients are tried for a wrong order

PASS, FAIL, NOT_DONE, TIMEOUT, CRASH = "pass", "fail", "not done", "timeout", "crash"


@dataclass
class Result:
    """What the grader found for one exercise (or, from :func:`check_pairs` with a subset,
    for some of its functions).

    Attributes:
        exercise: the exercise's name.
        status: ``"pass"``, ``"fail"``, ``"not done"``, ``"timeout"`` or ``"crash"``.
        error: the worst relative error over every gradient of every case (None when
            nothing was compared; inf for a wrong shape or a non-finite value).
        functions: function name -> its status.
        messages: what failed, one line each (the case and the gradient).
        hints: what to check, one per mistake recognised.
        mistakes: the keys of the mistakes recognised (``npsenet.exercise.mistakes``).
        notes: other lines to show (the capstone's training log).
        seconds: how long the check took.
    """

    exercise: str
    status: str
    error: float | None = None
    functions: dict = field(default_factory=dict)
    messages: list = field(default_factory=list)
    hints: list = field(default_factory=list)
    mistakes: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self):
        return self.status == PASS

    def to_json(self):
        data = asdict(self)
        if data["error"] is not None and not np.isfinite(data["error"]):
            data["error"] = "inf"
        return data

    @classmethod
    def from_json(cls, data):
        data = dict(data)
        if data.get("error") == "inf":
            data["error"] = float("inf")
        return cls(**data)

    def __str__(self):
        from .report import format_report
        return format_report([self])


def reference_pairs():
    """The reference solutions under their names: the plain path's pairs and helpers
    (``npsenet.nn.functional``) and the composite pairs (:mod:`.composed`)."""
    names = {n: getattr(functional, n) for n in functional.__all__}
    names.update({n: getattr(composed, n) for n in dir(composed)
                  if n.endswith(("_forward", "_backward"))})
    return types.SimpleNamespace(**names)


def gradient_error(actual, expected):
    """max |actual - expected| / max |expected| as a float; inf for a non-finite actual."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return float("inf")
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-12))


def _draw_dout(case, y, rng):
    if case.scalar_output:
        return np.asarray(rng.uniform(0.5, 2.0))
    return rng.standard_normal(np.shape(y))


def _answer_tuple(answer, case):
    """The backward's answer as a tuple with one entry per ``case.wrt``."""
    count = len(case.wrt)
    if count == 1 and not isinstance(answer, (tuple, list)):
        answer = (answer,)
    if not isinstance(answer, (tuple, list)):
        what = "None (is a `return` missing?)" if answer is None else type(answer).__name__
        raise AnswerError(f"{case.function} returned {what}; expected a tuple of {count} "
                          f"gradients ({', '.join(case.grad_names)}).")
    if len(answer) != count:
        raise AnswerError(f"{case.function} returned {len(answer)} values; expected {count} "
                          f"({', '.join(case.grad_names)}).")
    return tuple(answer)


@dataclass
class _Reference:
    """A case with the reference's answers: output, dout, cache, gradients, numerical."""
    case: object
    y: object
    dout: object
    cache: object
    grads: tuple
    numeric: tuple


def draw_case(maker, ref, rng):
    """A case from ``maker`` with its reference answers, drawn again (up to :data:`DRAWS`
    times) while the reference disagrees with the numerical gradient (a ReLU kink)."""
    for _ in range(DRAWS):
        case = maker(rng)
        y, cache = case.forward(ref, case.inputs)
        dout = _draw_dout(case, y, rng)
        grads = _answer_tuple(case.backward(ref, dout.copy(), cache), case)

        def f(case=case):
            return case.forward(ref, case.inputs)[0]

        numeric = tuple(None if case.inputs[n] is None
                        else numerical_gradient(f, case.inputs[n], dout) for n in case.wrt)
        if all(g is None or gradient_error(g, n) <= KINK_TOLERANCE
               for g, n in zip(grads, numeric)):
            return _Reference(case, y, dout, cache, grads, numeric)
    raise RuntimeError(f"the grader found no case of {maker} away from the kinks; please "
                       "report this.")


def _where(exc):
    """'ValueError: ... (ex01_linear.py, line 12, in linear_backward)' for an exception."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = ""
    if frames:
        last = frames[-1]
        place = f" ({last.filename.rsplit('/', 1)[-1]}, line {last.lineno}, in {last.name})"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}{place}" if message else type(exc).__name__ + place


def _matches(a, b):
    return (a is not None and b is not None and np.shape(a) == np.shape(b)
            and gradient_error(a, b) < TOLERANCE)


def _differs(variant, right):
    if variant is None or right is None:
        return variant is not right
    return np.shape(variant) != np.shape(right) or gradient_error(variant, right) > 1e3 * TOLERANCE


def diagnose(ref, reference, answer, wrong):
    """The hints for a student's wrong ``answer`` (a tuple of gradients) on a case.

    Args:
        ref: the reference pairs.
        reference: the case and its reference answers (from :func:`draw_case`).
        answer: the student's gradients.
        wrong: the indices of the gradients that failed.
    Returns:
        a list of (key, hint) pairs, one per mistake recognised.
    """
    case, found = reference.case, []
    if 1 < len(answer) <= MAX_ORDERED:
        names = case.grad_names
        for order in itertools.permutations(range(len(answer))):
            if order != tuple(range(len(answer))) and all(
                    _matches(answer[i], reference.grads[order[i]]) or
                    (answer[i] is None and reference.grads[order[i]] is None)
                    for i in range(len(answer))):
                found.append((WRONG_ORDER.key, WRONG_ORDER.hint.format(
                    expected="(" + ", ".join(names) + ")",
                    found="(" + ", ".join(names[order[i]] for i in range(len(answer))) + ")")))
                return found
    for mistake in MISTAKES.get(case.function, []):
        try:
            variant = mistake.variant(ref, case, reference.dout, reference.cache,
                                      reference.grads)
        except Exception:           # a variant that does not apply to this case
            continue
        if variant is None:
            continue
        if any(_differs(variant[i], reference.grads[i]) and _matches(answer[i], variant[i])
               for i in wrong):
            if mistake.key not in [k for k, _ in found]:
                found.append((mistake.key, mistake.hint))
    return found


class _Outcome:
    """What one function did over its cases: status, worst error, messages, hints."""

    def __init__(self, function):
        self.function, self.status, self.error = function, PASS, None
        self.messages, self.hints = [], []

    def worst(self, error):
        self.error = error if self.error is None else max(self.error, error)

    def fail(self, message, hints=()):
        self.status = FAIL
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(f"{self.function}: {message}")
        for key, hint in hints:
            if key not in [k for k, _ in self.hints]:
                self.hints.append((key, hint))


def check_function_cases(student, ref, function, rng):
    """Run every case of ``function`` on ``student`` (an object holding the exercise's
    functions); returns an :class:`_Outcome`."""
    outcome = _Outcome(function)
    first = None
    for maker in CASES[function]:
        reference = draw_case(maker, ref, rng)
        first = first or reference
        case = reference.case
        label = case.label
        try:
            y, cache = case.forward(student, case.copy_inputs().inputs)
        except Exception as exc:
            outcome.fail(f"{label}: the forward raised {_where(exc)}")
            return outcome
        if np.shape(y) != np.shape(reference.y) or \
                gradient_error(y, reference.y) > FORWARD_TOLERANCE:
            outcome.fail(f"{label}: the forward's output differs from the reference's; the "
                         "forward is given: restore it (npsenet exercise new writes a fresh "
                         "copy)")
            return outcome
        dout = reference.dout.copy()
        try:
            answer = _answer_tuple(case.backward(student, dout, cache), case)
        except NotImplementedError:
            outcome.status = NOT_DONE
            return outcome
        except AnswerError as exc:
            outcome.fail(f"{label}: {exc}")
            continue
        except Exception as exc:
            outcome.fail(f"{label}: raised {_where(exc)}")
            continue
        hints = []
        if not np.array_equal(dout, reference.dout):
            hints.append((MUTATED_DOUT.key, MUTATED_DOUT.hint))
            outcome.fail(f"{label}: dout was changed in place", hints)
        wrong = _compare(outcome, reference, answer)
        if wrong:
            shown = list(wrong.values())[:3] + ([f"{len(wrong) - 3} more gradients are wrong"]
                                                 if len(wrong) > 3 else [])
            outcome.fail(f"{label}: {', '.join(shown)}",
                         diagnose(ref, reference, answer, list(wrong)))
    if outcome.status == PASS and first is not None:
        _check_float32(outcome, student, first)
    return outcome


def _compare(outcome, reference, answer):
    """Each gradient against the numerical one and the reference's; returns {index: what
    is wrong} for the gradients that fail."""
    case, wrong = reference.case, {}
    for i, (mine, right, numeric) in enumerate(zip(answer, reference.grads, reference.numeric)):
        name = case.grad_names[i]
        if right is None:
            if mine is not None:
                wrong[i] = f"{name} should be None (there is no {case.wrt[i]})"
            continue
        if mine is None:
            wrong[i] = f"{name} is None"
            outcome.worst(float("inf"))
            continue
        if np.shape(mine) != np.shape(right):
            wrong[i] = (f"{name} has shape {tuple(np.shape(mine))}, expected "
                        f"{tuple(np.shape(right))} (the shape of {case.wrt[i]})")
            outcome.worst(float("inf"))
            continue
        error = max(gradient_error(mine, numeric), gradient_error(mine, right))
        outcome.worst(error)
        if not error < TOLERANCE:
            wrong[i] = f"{name} is wrong (relative error {error:.1e})"
    return wrong


def _check_float32(outcome, student, reference):
    """The first case again in float32: every gradient keeps its input's dtype."""
    case = reference.case.astype(np.float32)
    dout = (float(reference.dout) if case.scalar_output
            else reference.dout.astype(np.float32))
    try:
        y, cache = case.forward(student, case.copy_inputs().inputs)
        answer = _answer_tuple(case.backward(student, dout, cache), case)
    except Exception as exc:
        outcome.fail(f"{case.label} in float32: raised {_where(exc)}")
        return
    for name, grad, wrt in zip(case.grad_names, answer, case.wrt):
        if grad is not None and getattr(grad, "dtype", None) != np.float32:
            dtype = getattr(grad, "dtype", type(grad).__name__)
            outcome.fail(f"{case.label} in float32: {name} is {dtype}",
                         [(FLOAT64_FOR_FLOAT32.key,
                           FLOAT64_FOR_FLOAT32.hint.format(name=name, dtype=dtype))])
            return


def check_pairs(exercise, student, functions=None, seed=0):
    """Grade ``student``'s functions of ``exercise`` (an :class:`~.catalog.Exercise`).

    Args:
        exercise: the exercise.
        student: any object with the exercise's functions as attributes (the student's
            module, or a namespace of the reference with some functions replaced).
        functions: the names to check (default: every function the exercise asks for).
        seed: the seed of the random cases.
    Returns:
        a :class:`Result`.
    """
    ref = reference_pairs()
    rng = np.random.default_rng(seed)
    result = Result(exercise.name, PASS)
    for function in functions or list(exercise.todo):
        outcome = check_function_cases(student, ref, function, rng)
        result.functions[function] = outcome.status
        if outcome.error is not None:
            result.error = outcome.error if result.error is None else max(result.error,
                                                                          outcome.error)
        result.messages += outcome.messages
        for key, hint in outcome.hints:
            if hint not in result.hints:
                result.hints.append(hint)
            if key not in result.mistakes:
                result.mistakes.append(key)
    statuses = set(result.functions.values())
    if FAIL in statuses:
        result.status = FAIL
    elif NOT_DONE in statuses:
        result.status = NOT_DONE
        done = [f for f, s in result.functions.items() if s == PASS]
        if done:
            result.notes.append(f"{', '.join(done)} pass; "
                                f"{', '.join(f for f in result.functions if f not in done)} "
                                "not done yet")
    return result
