"""The course's exercises, in teaching order: what each teaches, which functions are given,
which the student writes, and the stub each of those starts as.

Every exercise is one file of the student's workspace. Its code comes from one place, the
project's own: the plain path's pairs (``npsenet/nn/functional/*.py``), the composite
pairs of :mod:`npsenet.exercise.composed` and the training step of
:mod:`npsenet.exercise.capstone`. :func:`npsenet.exercise.workspace.render` copies the
given functions with ``inspect``'s source, and writes each function to do as its
signature, the stub docstring below (shapes, and what to derive) and
``raise NotImplementedError``; with ``solutions`` it copies the project's function instead.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..nn.functional import activation, conv, linear, loss, norm, pool, se
from . import capstone, composed


@dataclass(frozen=True)
class Exercise:
    """One exercise.

    Attributes:
        name: what ``npsenet exercise check DIR NAME`` calls it.
        filename: its file in the workspace.
        title: one line.
        teaches: what it teaches (a sentence or two, for the README).
        intro: the file's docstring after the title: the equations and the task.
        source: the module whose functions and constants the file is made of.
        items: the names taken from ``source``, in the file's order.
        todo: name -> stub docstring, for the functions the student writes.
        imports: the import lines the file needs.
        epilogue: code appended at the end of the file.
    """

    name: str
    filename: str
    title: str
    teaches: str
    intro: str
    source: object
    items: tuple
    todo: dict
    imports: tuple = ()
    epilogue: str = ""

    @property
    def given(self):
        """The names copied as they are."""
        return tuple(n for n in self.items if n not in self.todo)


FUNCTIONAL = "from npsenet.nn.functional import"

EXERCISES = (
    Exercise(
        "linear", "ex01_linear.py", "The fully connected layer, y = x W^T + b",
        "the gradient of a matrix product, shapes as a check (dW has W's shape), and the "
        "batch sum of a bias; W1 and W2 of the excitation and the classifier are this layer.",
        """Forward (given):   y[n, o] = sum_i x[n, i] W[o, i] + b[o]
    x (N, in), W (out, in), b (out,) or None  ->  y (N, out)

Write linear_backward: dL/dx, dL/dW and dL/db from dy = dL/dy.""",
        linear, ("linear_forward", "linear_backward"),
        {"linear_backward": """\
dy (N, out) -> (dx (N, in), dW (out, in), db (out,) or None without bias).

The cache is (x, weight, has_bias). From y[n, o] = sum_i x[n, i] W[o, i] + b[o], find
which indices each gradient sums over; each result has the shape of what it
differentiates. Return the three in this order."""}),
    Exercise(
        "activations", "ex02_activations.py", "ReLU and sigmoid, the excitation's δ and σ",
        "element-wise derivatives, what a cache keeps (the mask, the output), and never "
        "writing into the upstream gradient.",
        """Forward (given):   ReLU  y = max(x, 0)           cache: the mask [x > 0]
                  sigmoid  y = 1 / (1 + e^-x)    cache: y itself

Write relu_backward and sigmoid_backward: dx from dy and the cache, same shape.""",
        activation, ("relu_forward", "relu_backward", "sigmoid", "sigmoid_forward",
                     "sigmoid_backward"),
        {"relu_backward": """\
dy (any shape) -> dx (the same shape).

The cache is the bool mask [x > 0] (the derivative at exactly 0 is taken as 0). Derive
d max(x, 0) / dx element by element. Return a new array: dy belongs to the caller.""",
         "sigmoid_backward": """\
dy (any shape) -> dx (the same shape).

The cache is y = σ(x), not x: write σ'(x) in terms of y (differentiate 1 / (1 + e^-x)
and substitute)."""},
        ("from npsenet.backend import get_array_module",)),
    Exercise(
        "softmax", "ex03_softmax_cross_entropy.py", "Softmax cross-entropy",
        "why softmax and cross-entropy are differentiated together, and the 1/N of a mean "
        "loss (label smoothing changes the target, not the derivation).",
        """Forward (given), p = softmax(z) over K classes, q the (smoothed) one-hot target:
    L = -1/N sum_n sum_k q[n, k] log p[n, k]          z (N, K) -> L (a 0-d array)

Write softmax_cross_entropy_backward: dL/dz, scaled by the upstream dloss.""",
        loss, ("log_softmax", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward"),
        {"softmax_cross_entropy_backward": """\
dloss (a scalar; 1.0 for the loss itself) -> dlogits (N, K).

The cache is (p, q), both (N, K): the probabilities and the target. Derive dL/dz[n, j]
through log p[n, k] = z[n, k] - log sum_j exp z[n, j] (q sums to one over k), multiply by
dloss, and keep p's dtype."""},
        ("from npsenet.backend import get_array_module",)),
    Exercise(
        "batchnorm", "ex04_batchnorm.py", "Batch normalisation in training mode",
        "a backward through statistics: the batch mean and variance depend on every input "
        "of their channel, so dx has a mean path and a variance path.",
        """Forward (given), per channel c over its m = N H W values:
    mu = 1/m sum x      var = 1/m sum (x - mu)^2      xhat = (x - mu) / sqrt(var + eps)
    y = gamma * xhat + beta                            x (N, C, H, W) -> y (N, C, H, W)

Write batchnorm_backward: dx, dgamma and dbeta.""",
        norm, ("AXES", "_c", "batchnorm_forward", "batchnorm_eval_forward",
               "batchnorm_backward"),
        {"batchnorm_backward": """\
dy (N, C, H, W) -> (dx (N, C, H, W), dgamma (C,), dbeta (C,)).

The cache is (xhat, gamma, inv_std, mode) with inv_std = 1 / sqrt(var + eps): mode None
in training mode (derive this), "eval" after batchnorm_eval_forward (the statistics are
constants there: dx = dy * gamma * inv_std). In training mode mu and var depend on every
x of the channel: go from dy to dxhat, then through var and mu, and simplify the sum to
an expression in dy and xhat."""},
        ("from npsenet.backend import get_array_module",)),
    Exercise(
        "conv", "ex05_conv.py", "Convolution by im2col, and its backward by col2im",
        "a convolution as one matrix product over patches, the gradient of that product, and "
        "col2im as the adjoint of im2col (overlapping patches add).",
        """Forward (given): cols = im2col(x), shape (C_in k k, N H' W') as a matrix, then
    Y = W_mat @ cols          W_mat = W.reshape(C_out, C_in k k), per group

Write col2im (the adjoint of im2col) and conv2d_backward (dx, dW, db).""",
        conv, ("conv_output_size", "pad_images", "offset_window", "im2col", "copy_patches",
               "col2im", "conv2d_forward", "conv2d_backward"),
        {"col2im": """\
dcols (C, k, k, N, H', W') -> dx of shape x_shape = (N, C, H, W).

The adjoint of im2col: entry cols[c, i, j, n, h, w] copied x_pad[n, c, s*h + i, s*w + j],
so its gradient goes back onto that pixel. Overlapping windows (stride < k) share pixels;
pad first and crop the padding at the end (offset_window gives the strided window of one
kernel offset).""",
         "conv2d_backward": """\
dy (N, C_out, H', W') -> (dx (N, C_in, H, W), dW (C_out, C_in/g, k, k),
db (C_out,) or None).

The cache is (x, weight, stride, padding, groups, has_bias). With Y = W_mat @ cols per
group (see conv2d_forward for the reshapes): derive dW_mat and dcols from the matrix
product, rebuild cols from x with im2col, and turn dcols into dx with col2im. db has no
bias when has_bias is False: return None."""},
        ("from npsenet.backend import get_array_module",)),
    Exercise(
        "squeeze", "ex06_squeeze.py", "The squeeze: global average and global max pooling",
        "the squeeze F_sq (Eq. 2) and its ablation's max (TPAMI 2020, Table 11): a mean "
        "shares its gradient equally, a max routes it to one winner.",
        """Forward (given):   average  z[n, c] = 1/(H W) sum_{i,j} u[n, c, i, j]
                  max      z[n, c] = max_{i,j} u[n, c, i, j]
    u (N, C, H, W) -> z (N, C)

Write global_avg_pool_backward and global_max_pool_backward: du from dz.""",
        pool, ("global_avg_pool_forward", "global_avg_pool_backward",
               "global_max_pool_forward", "global_max_pool_backward"),
        {"global_avg_pool_backward": """\
dz (N, C) -> du (N, C, H, W); the cache is u's shape.

Each z[n, c] is the mean of the H W entries of its channel: find dz[n, c] / du[n, c, i, j].
Create du with dz's dtype.""",
         "global_max_pool_backward": """\
dz (N, C) -> du (N, C, H, W).

The cache is (u's shape, idx): idx[n, c] is the flat index (over H W) of the channel's
arg max. Only the winner moves z; the other pixels get 0. (A one-hot mask, built by
comparing an arange with idx, avoids a loop and a scatter.)"""},
        ("from npsenet.backend import get_array_module",)),
    Exercise(
        "excitation", "ex07_excitation.py", "The excitation: two FC layers and the gate",
        "the excitation F_ex (Eq. 3) as a chain of four pairs run backwards, and the shapes "
        "of its bottleneck (C -> C/r -> C).",
        """Forward (given):   s = σ(W2 δ(W1 z + b1) + b2)
    z (N, C), W1 (C/r, C), W2 (C, C/r)  ->  s (N, C)

Write excitation_backward from the four backward pairs (imported from the plain path,
so this exercise stands on its own; to use yours, import them from ex01_linear and
ex02_activations instead).""",
        composed, ("excitation_forward", "excitation_backward"),
        {"excitation_backward": """\
ds (N, C) -> (dz (N, C), dW1 (C/r, C), db1 (C/r,) or None, dW2 (C, C/r),
db2 (C,) or None).

The cache holds the four layers' caches under "fc1", "relu", "fc2" and "gate". Run
their backward pairs in the reverse order of the forward; each one takes the gradient of
its output and returns the gradient of its input (and its parameters')."""},
        (f"{FUNCTIONAL} (linear_backward, linear_forward, relu_backward, relu_forward,\n"
         "                                   sigmoid_backward, sigmoid_forward)",)),
    Exercise(
        "scale", "ex08_scale.py", "The scale: two inputs, two gradients",
        "the scale F_scale (Eq. 4): a layer with two inputs has two gradients, and a "
        "broadcast in the forward is a sum in the backward.",
        """Forward (given):   x̃[n, c, i, j] = s[n, c] · u[n, c, i, j]
    u (N, C, H, W), s (N, C)  ->  x̃ (N, C, H, W)

Write channel_scale_backward: du and ds.""",
        se, ("channel_scale_forward", "channel_scale_backward"),
        {"channel_scale_backward": """\
dy (N, C, H, W) -> (du (N, C, H, W), ds (N, C)).

The cache is (u, s). Each output entry depends on one u and one s; each s[n, c] is used
at all H W positions of its channel."""}),
    Exercise(
        "se_block", "ex09_se_block.py", "The whole SE block",
        "the SE block's backward: U reaches the output along two paths (through the scale, "
        "and through the gate computed from U), and the chain rule sums them.",
        """Forward (given):   z = F_sq(U),  s = F_ex(z),  x̃ = s ⊙ U
    U (N, C, H, W)  ->  x̃ (N, C, H, W)

Write se_block_backward from the pairs of the squeeze, the excitation and the scale
(imported from the reference so this exercise stands on its own).""",
        composed, ("se_block_forward", "se_block_backward"),
        {"se_block_backward": """\
dy (N, C, H, W) -> (du (N, C, H, W), dW1, db1, dW2, db2), the weights' gradients
shaped as in excitation_backward.

The cache holds the caches of the "squeeze", the "excitation" and the "scale". Find every
path from U to the output: the gradient of U is the sum over all of them."""},
        (f"{FUNCTIONAL} (channel_scale_backward, channel_scale_forward,\n"
         "                                   global_avg_pool_backward, global_avg_pool_forward)",
         "from npsenet.exercise.composed import excitation_backward, excitation_forward")),
    Exercise(
        "residual", "ex10_residual.py", "A residual block with SE, in each of the paper's "
        "placements",
        "the chain rule through a graph with a branch and a shortcut, with the SE block in "
        "each of the four integrations of TPAMI 2020, Fig. 5 (standard, pre, post, identity; "
        "npsenet/models/blocks.py).",
        """Forward (given): a BasicBlock, F(x) = BN2(conv2(ReLU(BN1(conv1(x))))), with SE at
    standard  y = ReLU(SE(F(x)) + shortcut(x))     pre       y = ReLU(F(SE(x)) + shortcut(x))
    post      y = SE(ReLU(F(x) + shortcut(x)))     identity  y = ReLU(F(x) + SE(shortcut(x)))

Write residual_block_backward: dx and one gradient per parameter, for every placement.""",
        composed, ("PLACEMENTS", "residual_block_forward", "residual_block_backward"),
        {"residual_block_backward": """\
dy (N, C_out, H', W') -> (dx (N, C_in, H, W), grads), grads a dict: parameter
name -> gradient.

The cache holds the placement, the parameters' names ("names") and each layer's cache
under its name ("conv1", "bn1", "relu1", ..., "downsample.0", "se", "relu_out"). Run the
forward backwards: the SE block's backward goes where its forward was, and x reaches the
output along the branch and the shortcut. grads needs every name of params."""},
        (f"{FUNCTIONAL} (batchnorm_backward, batchnorm_forward, conv2d_backward,\n"
         "                                   conv2d_forward, relu_backward, relu_forward)",
         "from npsenet.exercise.composed import se_block_backward, se_block_forward")),
    Exercise(
        "capstone", "ex11_capstone.py", "Your layers in SE-ResNet-20",
        "your pairs of exercises 1-6 and 8 plugged into SE-ResNet-20 (a path object, "
        "ns.nn.switch.using_path) and trained a few epochs on the CIFAR-10 subset, or on "
        "synthetic images when it is absent.",
        """The layers of npsenet.nn call the pairs of a path object; npsenet.exercise.student_path
builds one from this folder: the plain path's pairs, with yours (ex01-ex06, ex08) in their
place. The grader first checks that one training step of SE-ResNet-20 on your pairs gives
the plain path's loss and gradients, then trains on your pairs with your train_step.

Write train_step. Then run this file (python ex11_capstone.py) or the grader.""",
        capstone, ("EPOCHS", "TRAIN_IMAGES", "TEST_IMAGES", "BATCH_SIZE", "DATA_DIR",
                   "train_step"),
        {"train_step": """\
One SGD step on a batch; returns (the batch's mean loss as a float, the logits
(N, 10)).

model: SE-ResNet-20, whose layers run on your pairs; loss_fn: ns.nn.SoftmaxCrossEntropy;
optimizer: ns.optim.SGD over model.parameters(); x (N, 3, 32, 32), y (N,) labels.
A layer's backward adds its parameters' gradients into param.grad (it never resets
them), and optimizer.step() reads param.grad."""},
        epilogue="""

if __name__ == "__main__":
    from npsenet.exercise.capstone import run_capstone

    run_capstone(__file__, train_step, epochs=EPOCHS, train_images=TRAIN_IMAGES,
                 test_images=TEST_IMAGES, batch_size=BATCH_SIZE, data_dir=DATA_DIR)
"""),
)
"""Every exercise, in teaching order."""

BY_NAME = {e.name: e for e in EXERCISES}


def exercise_names():
    """The exercises' names in teaching order."""
    return [e.name for e in EXERCISES]


def get_exercise(name):
    """The exercise called ``name``; a ValueError listing the names otherwise."""
    if name not in BY_NAME:
        raise ValueError(f"no exercise called {name!r}; the exercises are "
                         f"{', '.join(exercise_names())}.")
    return BY_NAME[name]


def exercise_of(function):
    """The exercise whose student writes ``function`` (None if none does)."""
    for exercise in EXERCISES:
        if function in exercise.todo:
            return exercise
    return None
