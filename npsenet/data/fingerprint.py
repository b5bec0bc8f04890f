"""What a run trained on, as a small JSON-able dict, and how two of them differ.

    fp = ns.data.data_fingerprint(train_set)            # or a folder: data_fingerprint("data")
    json.dumps(fp)                                      # small: names, sizes, MD5s, counts
    ns.data.describe_fingerprint_mismatch(saved, fp)    # None, or one line saying what changed

It describes a dataset as a whole (its files and their MD5s, or its whole content), to
record or compare what data is on a machine. ``npsenet train --resume`` does not use it:
the trainer records a cheaper fingerprint of the very images it trains on (after
``--limit-train``; ``npsenet.train.runs``) and refuses to continue on other data unless
given ``--allow-data-change``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .download import ARCHIVES, file_md5

FORMAT = 1
# the files of each dataset's folder, in the order they are listed
CIFAR_FILES = {
    "cifar10": ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"),
    "cifar100": ("meta", "train", "test"),
}


def data_fingerprint(data) -> dict:
    """A small JSON-able description of a dataset, enough to tell whether data changed.

    Args:
        data: one of
            - a :class:`~npsenet.data.CIFAR10` / :class:`~npsenet.data.CIFAR100` object: the
              files it was loaded from (name, size in bytes, MD5; no file is read again),
              its split and image count;
            - a :class:`~npsenet.data.SyntheticCIFAR` object: its generator settings (seed,
              split, count) and the MD5 of its images and labels;
            - a folder (str or Path) that holds ``cifar-10-batches-py/`` or
              ``cifar-100-python/``, or is one: every CIFAR file present in it (name, size,
              MD5: this reads the files);
            - any other object with ``images`` and ``labels`` arrays: their MD5 and count.
    Returns:
        ``{"format": 1, "kind": "cifar10" | "cifar100" | "synthetic" | "arrays",
        "split": "train" | "test" | None, "images": int | None,
        "files": {name: {"size": int, "md5": str}}, ...}``; synthetic adds ``"seed"`` and
        ``"content_md5"``, arrays add ``"content_md5"``. Only str, int and None values.
    Raises:
        FileNotFoundError: a folder that holds no CIFAR files.
        TypeError: anything else.
    """
    from .cifar import CIFAR10
    from .synthetic import SyntheticCIFAR

    if isinstance(data, (str, Path)):
        return _folder_fingerprint(Path(data).expanduser())
    split = ("train" if data.train else "test") if hasattr(data, "train") else None
    if isinstance(data, CIFAR10):
        files = {name: {"size": int(info["size"]), "md5": str(info["md5"])}
                 for name, info in getattr(data, "files", {}).items()}
        return {"format": FORMAT, "kind": data.name, "split": split, "images": len(data),
                "files": files}
    if isinstance(data, SyntheticCIFAR):
        return {"format": FORMAT, "kind": "synthetic", "split": split, "images": len(data),
                "seed": int(getattr(data, "seed", 0)), "files": {},
                "content_md5": _content_md5(data.images, data.labels)}
    if hasattr(data, "images") and hasattr(data, "labels"):
        return {"format": FORMAT, "kind": "arrays", "split": split, "images": len(data.labels),
                "files": {}, "content_md5": _content_md5(data.images, data.labels)}
    raise TypeError(f"data_fingerprint: expected a dataset (CIFAR10, CIFAR100, SyntheticCIFAR) "
                    f"or a folder, got {type(data).__name__}.")


def describe_fingerprint_mismatch(saved: dict, current: dict) -> str | None:
    """One line saying how two :func:`data_fingerprint` results differ, or None if they agree.

    ``saved`` is the run's recorded fingerprint, ``current`` that of the data found now.
    Compared: the kind of dataset, the split and the image count (where both know them),
    the files both list (size and MD5), and the generator settings and content MD5 (where
    both have them). A file listed on one side only counts as a difference when both
    describe a loaded dataset of the same split (a folder's fingerprint lists every file of
    the folder, a dataset's only those it loaded). Fingerprints that are not dicts are
    reported as unreadable.
    """
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return "the recorded data fingerprint is unreadable (not a dict)"
    differences, kind_differs = [], False
    for key, what in (("kind", "dataset"), ("split", "split"), ("images", "number of images"),
                      ("seed", "seed"), ("content_md5", "content (MD5)")):
        a, b = saved.get(key), current.get(key)
        if a is not None and b is not None and a != b:
            differences.append(f"{what} {_short(a)} then, {_short(b)} now")
            if key == "kind":
                kind_differs = True
                break
    files_a, files_b = saved.get("files") or {}, current.get("files") or {}
    if isinstance(files_a, dict) and isinstance(files_b, dict) and not kind_differs:
        changed = [name for name in sorted(set(files_a) & set(files_b))
                   if files_a[name] != files_b[name]]
        if changed:
            differences.append(f"{len(changed)} file(s) differ in size or MD5 "
                               f"({', '.join(_short(n) for n in changed[:3])}"
                               f"{', ...' if len(changed) > 3 else ''})")
        if saved.get("split") is not None and saved.get("split") == current.get("split"):
            alone = sorted(set(files_a) ^ set(files_b))  # both are loaded datasets
            if alone:
                differences.append("file(s) on one side only: "
                                   + ", ".join(_short(n) for n in alone[:3]))
    if not differences:
        return None
    return "the data differs from the run's: " + "; ".join(differences)


def _short(value) -> str:
    text = str(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _content_md5(images, labels) -> str:
    digest = hashlib.md5()
    for array in (images, labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _folder_fingerprint(root: Path) -> dict:
    """The CIFAR files in ``root`` (or in its dataset folder), each with size and MD5."""
    for kind, archive in ARCHIVES.items():
        folder = root if root.name == archive.folder else root / archive.folder
        if folder.is_dir():
            files = {name: {"size": (folder / name).stat().st_size,
                            "md5": file_md5(folder / name)}
                     for name in CIFAR_FILES[kind] if (folder / name).is_file()}
            if files:
                return {"format": FORMAT, "kind": kind, "split": None, "images": None,
                        "files": files}
    raise FileNotFoundError(f"data_fingerprint: {root} holds no CIFAR files (expected "
                            f"cifar-10-batches-py/ or cifar-100-python/ in it).")
