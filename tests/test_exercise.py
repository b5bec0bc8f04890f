"""The course kit (npsenet.exercise, ``npsenet exercise``): the reference solutions pass,
every known mistake is caught with its own hint, a stub is "not done yet", a hanging or
crashing submission is reported and the grader goes on, ``grade`` writes the gradebook,
and the capstone trains SE-ResNet-20 on a student's pairs."""
from __future__ import annotations

import csv
import inspect
import json
from functools import partial

import numpy as np
import pytest

import npsenet as ns
from npsenet.cli import main
from npsenet.exercise import (EXERCISES, check_function, check_pairs, check_workspace,
                              get_exercise, new_workspace, pairs_with, reference_pairs,
                              student_notebook)
from npsenet.exercise import composed
from npsenet.exercise.capstone import check_capstone, check_train_step
from npsenet.exercise.grader import CRASH, FAIL, NOT_DONE, PASS, TIMEOUT
from npsenet.exercise.workspace import load_module, render
from npsenet.models.blocks import BasicBlock
from npsenet.nn import functional as F
from npsenet.nn.switch import active_path, using_path

PAIR_EXERCISES = [e for e in EXERCISES if e.name != "capstone"]


# -- the path switch the capstone needs -------------------------------------------------------
def test_using_path_makes_every_layer_call_the_given_pairs_and_restores():
    calls = []

    def relu_forward(x, inplace=False):
        calls.append("forward")
        return F.relu_forward(x, inplace)

    path = pairs_with({"relu_forward": relu_forward})
    layer = ns.nn.ReLU()
    x = np.array([[-1.0, 2.0]])
    with using_path(path):
        assert active_path() is path
        with using_path(F):
            assert active_path() is F
        assert active_path() is path
        y = layer(x)
        assert np.array_equal(layer.backward(np.ones_like(y)), [[0.0, 1.0]])
    assert calls == ["forward"] and active_path() is not path
    with pytest.raises(ValueError, match="not names"):
        pairs_with({"relu_forwards": relu_forward})


# -- the reference solutions ----------------------------------------------------------------------
@pytest.mark.parametrize("bias", [False, True])
def test_the_se_block_pair_is_the_layer(rng, bias):
    se = ns.nn.SEBlock(8, reduction=4, bias=bias).to(dtype=np.float64)
    u = rng.standard_normal((2, 8, 3, 3))
    dy = rng.standard_normal(u.shape)
    with ns.nn.fast(False):
        out, du = se(u), None
        se.zero_grad()
        du = se.backward(dy)
    b1 = se.fc1.bias.data if bias else None
    b2 = se.fc2.bias.data if bias else None
    mine, cache = composed.se_block_forward(u, se.fc1.weight.data, b1, se.fc2.weight.data, b2)
    du2, dw1, db1, dw2, db2 = composed.se_block_backward(dy, cache)
    assert np.allclose(mine, out) and np.allclose(du2, du)
    assert np.allclose(dw1, se.fc1.weight.grad) and np.allclose(dw2, se.fc2.weight.grad)
    assert (db1 is None) == (not bias)


@pytest.mark.parametrize("placement", composed.PLACEMENTS)
@pytest.mark.parametrize("c_in, c_out, stride", [(4, 4, 1), (2, 4, 2)])
def test_the_residual_pair_is_basic_block(rng, placement, c_in, c_out, stride):
    block = BasicBlock(c_in, c_out, stride, se_layer=partial(ns.nn.SEBlock, reduction=2),
                       placement=placement).to(dtype=np.float64)
    params = {name: p.data + 0.1 * rng.standard_normal(p.shape)
              for name, p in block.named_parameters()}
    block.load_state_dict(params, strict=False)
    x = rng.standard_normal((2, c_in, 6, 6))
    with ns.nn.fast(False):
        y = block(x)
        dy = rng.standard_normal(y.shape)
        block.zero_grad()
        dx = block.backward(dy)
    y2, cache = composed.residual_block_forward(x, params, stride, placement)
    dx2, grads = composed.residual_block_backward(dy, cache)
    assert np.allclose(y2, y) and np.allclose(dx2, dx)
    assert set(grads) == set(params)
    for name, p in block.named_parameters():
        assert np.allclose(grads[name], p.grad), name


@pytest.mark.parametrize("exercise", PAIR_EXERCISES, ids=lambda e: e.name)
def test_the_reference_solutions_pass(exercise):
    result = check_pairs(exercise, reference_pairs())
    assert result.status == PASS, str(result)
    assert result.error < 1e-8


def test_the_solutions_are_the_projects_own_code():
    """One source of truth: --solutions copies the project's functions as they are."""
    text = render(get_exercise("batchnorm"), solutions=True)
    assert inspect.getsource(F.batchnorm_backward) in text
    text = render(get_exercise("se_block"), solutions=True)
    assert inspect.getsource(composed.se_block_backward) in text
    stub = render(get_exercise("batchnorm"))
    assert inspect.getsource(F.batchnorm_forward) in stub
    assert inspect.getsource(F.batchnorm_backward) not in stub
    assert 'raise NotImplementedError("batchnorm_backward: not done yet' in stub


# -- the mistakes students make -----------------------------------------------------------------
def _bn_without_variance_path(dy, cache):
    xhat, gamma, inv_std, _ = cache
    dbeta, dgamma = dy.sum(axis=(0, 2, 3)), (dy * xhat).sum(axis=(0, 2, 3))
    dx = (gamma * inv_std)[None, :, None, None] * (dy - dy.mean(axis=(0, 2, 3), keepdims=True))
    return dx, dgamma, dbeta


def _squeeze_without_hw(dz, u_shape):
    return np.broadcast_to(dz[:, :, None, None], u_shape).copy()


def _se_block_without_gate_path(dy, cache):
    du, ds = F.channel_scale_backward(dy, cache["scale"])
    _, dw1, db1, dw2, db2 = composed.excitation_backward(ds, cache["excitation"])
    return du, dw1, db1, dw2, db2


def _linear_transposed(dy, cache):
    x, w, has_bias = cache
    return dy @ w, x.T @ dy, dy.sum(axis=0) if has_bias else None


def _softmax_summed(dloss, cache):
    p, q = cache
    return (p - q) * dloss


def _linear_bias_not_summed(dy, cache):
    x, w, has_bias = cache
    return dy @ w, dy.T @ x, dy if has_bias else None


def _relu_mutating(dy, mask):
    dy[~mask] = 0
    return dy


def _linear_wrong_order(dy, cache):
    x, w, has_bias = cache
    return dy.T @ x, dy @ w, dy.sum(axis=0) if has_bias else None


def _scale_wrong_order(dy, cache):
    u, s = cache
    return (dy * u).sum(axis=(2, 3)), dy * s[:, :, None, None]


def _squeeze_float64(dz, u_shape):
    du = np.zeros(u_shape)                                   # float64 whatever dz is
    return du + (dz / (u_shape[2] * u_shape[3]))[:, :, None, None]


MISTAKE_CASES = [   # exercise, function name, wrong solution, the mistake it must be named
    ("squeeze", "global_avg_pool_backward", _squeeze_without_hw, "forgot_hw"),
    ("se_block", "se_block_backward", _se_block_without_gate_path, "dropped_gate_path"),
    ("batchnorm", "batchnorm_backward", _bn_without_variance_path, "bn_variance_path"),
    ("linear", "linear_backward", _linear_transposed, "transposed_weight"),
    ("softmax", "softmax_cross_entropy_backward", _softmax_summed, "summed_not_mean"),
    ("linear", "linear_backward", _linear_bias_not_summed, "bias_not_summed"),
    ("activations", "relu_backward", _relu_mutating, "mutated_dout"),
    ("linear", "linear_backward", _linear_wrong_order, "wrong_order"),
    ("scale", "channel_scale_backward", _scale_wrong_order, "wrong_order"),
    ("squeeze", "global_avg_pool_backward", _squeeze_float64, "dtype"),
]


@pytest.mark.parametrize("exercise, function, wrong, key", MISTAKE_CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in MISTAKE_CASES])
def test_each_known_mistake_fails_with_its_own_hint(exercise, function, wrong, key):
    result = check_function(exercise, quiet=True, **{function: wrong})
    assert result.status == FAIL
    assert result.mistakes == [key], str(result)
    assert len(result.hints) == 1 and result.hints[0] in " ".join(str(result).split())


def test_different_mistakes_get_different_hints():
    hints = {}
    for exercise, function, wrong, key in MISTAKE_CASES:
        hints.setdefault(key, set()).update(
            check_function(exercise, quiet=True, **{function: wrong}).hints)
    texts = [t for ts in hints.values() for t in ts]
    assert len(texts) == len(set(texts))           # no hint serves two mistakes


def test_a_stub_is_not_done_yet_and_a_partial_exercise_says_what_passes():
    def relu_backward(dy, mask):
        raise NotImplementedError

    result = check_function("activations", relu_backward, quiet=True)
    assert result.status == NOT_DONE and not result.messages and not result.hints
    result = check_function("activations", relu_backward=F.relu_backward,
                            sigmoid_backward=lambda dy, y: (_ for _ in ()).throw(
                                NotImplementedError()), quiet=True)
    assert result.status == NOT_DONE
    assert result.notes == ["relu_backward pass; sigmoid_backward not done yet"]


def test_a_missing_return_or_an_exception_is_a_failure_with_its_line():
    def linear_backward(dy, cache):
        dy @ cache[1]

    result = check_function("linear", linear_backward, quiet=True)
    assert result.status == FAIL and "is a `return` missing?" in result.messages[0]

    def sigmoid_backward(dy, y):
        return dy * undefined_name  # noqa: F821

    result = check_function("activations", sigmoid_backward, quiet=True)
    assert "NameError" in result.messages[0] and "in sigmoid_backward" in result.messages[0]
    with pytest.raises(ValueError, match="asks for"):
        check_function("squeeze", _squeeze_without_hw, _squeeze_float64)


def test_check_function_prints_the_table(capsys):
    check_function("scale", F.channel_scale_backward)
    out = capsys.readouterr().out
    assert "exercise" in out and "worst error" in out and "scale" in out and "pass" in out


# -- workspaces, the command line and the subprocesses -----------------------------------------
def test_new_then_check_reports_every_exercise_not_done(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert main(["exercise", "new", str(ws)]) == 0
    assert sorted(p.name for p in ws.iterdir()) == sorted(
        [e.filename for e in EXERCISES] + ["README.md"])
    assert main(["exercise", "check", str(ws)]) == 1
    out = capsys.readouterr().out
    assert out.count("not done yet") == len(EXERCISES) + 1        # the rows and the summary
    assert f"0 of {len(EXERCISES)} exercises pass" in out
    assert main(["exercise", "new", str(ws)]) == 2                  # never overwrites work
    assert "--force" in capsys.readouterr().err
    assert main(["exercise", "check", str(ws), "no_such"]) == 2


def test_solutions_pass_every_exercise_and_the_capstone_trains(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NPSENET_QUICK", "1")            # the capstone: one epoch of 64 images
    monkeypatch.delenv("NPSENET_CIFAR_SUBSET", raising=False)
    monkeypatch.setenv("NPSENET_DATA", str(tmp_path / "no-data"))    # synthetic images
    ws = tmp_path / "ws2"
    assert main(["exercise", "new", str(ws), "--solutions"]) == 0
    assert main(["exercise", "check", str(ws)]) == 0
    out = capsys.readouterr().out
    assert f"{len(EXERCISES)} of {len(EXERCISES)} exercises pass." in out
    assert "epoch 1/1: train loss" in out and "64 training images (synthetic)" in out


def test_a_hanging_or_crashing_exercise_is_reported_and_grading_goes_on(tmp_path):
    ws = tmp_path / "ws"
    new_workspace(ws, solutions=True)
    linear = ws / "ex01_linear.py"
    linear.write_text(linear.read_text().replace(
        "    x, weight, has_bias = cache\n", "    while True:\n        pass\n"))
    acts = ws / "ex02_activations.py"
    acts.write_text(acts.read_text().replace(
        '    """dx = dy * [x > 0]."""\n', '    """dx = dy * [x > 0]."""\n'
        "    import os\n    os._exit(3)\n"))
    results = check_workspace(ws, ["linear", "activations", "scale"], timeout=3)
    assert [r.status for r in results] == [TIMEOUT, CRASH, PASS]
    assert "stopped after 3 s" in results[0].messages[0]
    assert "exit status 3" in results[1].messages[0]


def test_grade_writes_the_gradebook(tmp_path, capsys):
    new_workspace(tmp_path / "class" / "alice", solutions=True)
    new_workspace(tmp_path / "class" / "bob")
    book, feedback = tmp_path / "grades.csv", tmp_path / "feedback"
    assert main(["exercise", "grade", str(tmp_path / "class"), "linear", "--csv", str(book),
                 "--feedback", str(feedback)]) == 0
    with open(book, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"student": "alice", "linear": "1", "total": "1"},
                    {"student": "bob", "linear": "0", "total": "0"}]
    assert "not done yet" in (feedback / "bob.txt").read_text()
    assert "wrote" in capsys.readouterr().out


# -- the capstone --------------------------------------------------------------------------------
def test_the_training_step_mistakes_are_named():
    def no_zero_grad(model, loss_fn, optimizer, x, y):
        logits = model(x)
        loss = loss_fn(logits, y)
        model.backward(loss_fn.backward())
        optimizer.step()
        return float(loss), logits

    def no_step(model, loss_fn, optimizer, x, y):
        logits = model(x)
        loss = loss_fn(logits, y)
        model.zero_grad()
        model.backward(loss_fn.backward())
        return float(loss), logits

    assert "zero_grad" in check_train_step(no_zero_grad)[1]
    assert "optimizer.step()" in check_train_step(no_step)[1]


def test_the_capstone_names_the_pair_it_still_needs(tmp_path):
    ws = tmp_path / "ws"
    new_workspace(ws)
    capstone = ws / "ex11_capstone.py"
    solved = render(get_exercise("capstone"), solutions=True)
    capstone.write_text(solved)
    result = check_capstone(ws, load_module(capstone))
    assert result.status == NOT_DONE
    assert result.notes == ["needs softmax_cross_entropy_backward of exercise softmax "
                            "(not done yet)"]


# -- the exercise notebooks' student versions ----------------------------------------------------
def test_student_notebook_replaces_the_solution_regions():
    nb = {"cells": [{"cell_type": "code", "execution_count": 3, "outputs": [{"x": 1}],
                     "metadata": {}, "source": "def f(x):\n    ### BEGIN SOLUTION\n"
                                               "    return 2 * x\n    ### END SOLUTION\n"},
                    {"cell_type": "markdown", "metadata": {}, "source": "# title"}]}
    student = student_notebook(nb)
    assert student["cells"][0]["source"] == ("def f(x):\n    # YOUR CODE HERE\n"
                                             "    raise NotImplementedError()")
    assert student["cells"][0]["outputs"] == [] and student["cells"][1] == nb["cells"][1]
    assert "2 * x" in json.dumps(nb)                              # the input is left as it was


def test_strip_and_list_commands(tmp_path, capsys):
    source = tmp_path / "sheet.ipynb"
    source.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                  "cells": [{"cell_type": "code", "execution_count": None,
                                             "outputs": [], "metadata": {},
                                             "source": "### BEGIN SOLUTION\nx = 1\n"
                                                       "### END SOLUTION"}]}))
    assert main(["exercise", "strip", str(source), "--out", str(tmp_path / "student")]) == 0
    cell = json.loads((tmp_path / "student" / "sheet.ipynb").read_text())["cells"][0]
    assert cell["source"] == "# YOUR CODE HERE\nraise NotImplementedError()"
    assert main(["exercise", "strip", str(source), "--out", str(tmp_path)]) == 2
    assert main(["exercise", "list"]) == 0
    assert "ex11_capstone.py" in capsys.readouterr().out
