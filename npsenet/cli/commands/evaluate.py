"""``npsenet eval``: the test accuracy of a saved model.

    npsenet eval --checkpoint runs/se_resnet20-cifar10/checkpoint.npz
    test loss: 0.4312
    test accuracy: 0.8671
"""
from __future__ import annotations

from ..args import add_checkpoint_input_arguments, add_device_argument, positive_int


def add_parser(sub):
    p = sub.add_parser(
        "eval", help="test accuracy of a checkpoint",
        description="Evaluate a checkpoint (written by npsenet train or ns.io.save_model) on a "
                    "test set and print its loss and accuracy. The dataset and the input "
                    "normalisation default to those the model was trained with, and so "
                    "does the number of test images (the run's --limit-test; --full-test "
                    "for all).")
    add_checkpoint_input_arguments(p, "a checkpoint.npz file")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("--limit-test", type=positive_int, default=None, metavar="N",
                       help="evaluate only the first N test images (default: as many as the "
                            "training run used, its --limit-test; all for other files)")
    limit.add_argument("--full-test", action="store_true",
                       help="evaluate every test image, whatever --limit-test the run used")
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args):
    from ...train import evaluate_checkpoint

    loss, accuracy, count = evaluate_checkpoint(
        args.checkpoint, dataset=args.dataset, data_dir=args.data_dir, device=args.device,
        batch_size=args.batch_size, limit_test=args.limit_test,
        download=args.download is not False, full_test=args.full_test)
    print(f"test loss: {loss:.4f} ({count} images)")
    print(f"test accuracy: {accuracy:.4f}")
    return 0
