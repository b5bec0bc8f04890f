"""ns.data: the real CIFAR-10 subset, the synthetic dataset, augmentation, normalisation and
the batch loader (coverage, reproducibility, resuming)."""
from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pytest

import npsenet as ns
from npsenet.data.transforms import standard_augment

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


# ---------------------------------------------------------------- CIFAR-10 (real subset)

def test_cifar10_subset_loads(cifar_subset_root):
    train = ns.data.CIFAR10(cifar_subset_root, train=True)
    test = ns.data.CIFAR10(cifar_subset_root, train=False)
    assert len(train) == 4660 and len(test) == 466
    for split in (train, test):
        assert split.images.shape == (len(split), 3, 32, 32) and split.images.dtype == np.uint8
        assert split.labels.shape == (len(split),) and split.labels.dtype == np.int64
        assert set(split.labels.tolist()) == set(range(10))
        assert split.classes == CIFAR10_NAMES
        assert split.images.flags.c_contiguous
    # real photos: every channel uses most of the range and the channels differ
    assert train.images.min() == 0 and train.images.max() == 255
    mean, std = ns.data.channel_stats(train.images)
    assert np.all(np.abs(mean - ns.data.CIFAR10_MEAN) < 0.03)
    assert np.all(np.abs(std - ns.data.CIFAR10_STD) < 0.03)
    image, label = train[0]
    assert image.shape == (3, 32, 32) and label == train.labels[0]


def test_cifar10_accepts_the_batches_folder_itself(cifar_subset_root):
    direct = ns.data.CIFAR10(cifar_subset_root / "cifar-10-batches-py", train=False)
    via_root = ns.data.get_dataset("cifar10", data_dir=cifar_subset_root, train=False)
    np.testing.assert_array_equal(direct.images, via_root.images)
    np.testing.assert_array_equal(direct.labels, via_root.labels)


def test_missing_cifar_says_where_it_looked_and_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        ns.data.CIFAR10(tmp_path, train=True, download=False)
    message = str(info.value)
    assert f"looked for {tmp_path / 'cifar-10-batches-py'}, which does not exist" in message
    assert "--data-dir" in message and "download=True" in message
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks batches.meta, data_batch_1, .*data_batch_5"):
        ns.data.CIFAR10(tmp_path / "cifar-10-batches-py", train=True)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        ns.data.get_dataset("cifar100", data_dir=tmp_path)


def test_get_dataset_rejects_unknown_names():
    with pytest.raises(ValueError, match="cifar10, cifar100, synthetic"):
        ns.data.get_dataset("mnist")


# ---------------------------------------------------------------- synthetic

def _digest(dataset) -> str:
    return hashlib.sha256(dataset.images.tobytes() + dataset.labels.tobytes()).hexdigest()


def test_synthetic_is_deterministic_and_splits_differ():
    ns.manual_seed(1)
    first = ns.data.SyntheticCIFAR(train=True, num_samples=300, seed=5)
    ns.manual_seed(2)  # the global seed must not matter
    again = ns.data.SyntheticCIFAR(train=True, num_samples=300, seed=5)
    assert _digest(first) == _digest(again)
    test = ns.data.SyntheticCIFAR(train=False, num_samples=300, seed=5)
    other_seed = ns.data.SyntheticCIFAR(train=True, num_samples=300, seed=6)
    assert len({_digest(first), _digest(test), _digest(other_seed)}) == 3
    assert first.images.shape == (300, 3, 32, 32) and first.images.dtype == np.uint8
    assert first.labels.dtype == np.int64 and len(first.classes) == 10
    assert np.bincount(first.labels, minlength=10).tolist() == [30] * 10


def test_synthetic_default_sizes():
    train, test = ns.data.get_dataset("synthetic"), ns.data.get_dataset("synthetic", train=False)
    assert (len(train), len(test)) == (2000, 500)
    assert set(train.labels.tolist()) == set(range(10))


def _nearest_mean_accuracy(train_features, train_labels, test_features, test_labels):
    means = np.stack([train_features[train_labels == k].mean(0) for k in range(10)])
    distances = ((test_features[:, None, :] - means[None]) ** 2).sum(-1)
    return float((distances.argmin(1) == test_labels).mean())


def _colour_and_orientation_features(images):
    """Per-channel contrast plus the energy of horizontal/vertical/diagonal differences."""
    x = images.astype(np.float64)
    x = x - x.mean(axis=(2, 3), keepdims=True)
    gray = x.mean(1)
    dx, dy = np.diff(gray, axis=2)[:, :-1], np.diff(gray, axis=1)[:, :, :-1]
    return np.concatenate([x.std(axis=(2, 3)) / 10,
                           np.stack([(dx ** 2).mean((1, 2)), (dy ** 2).mean((1, 2)),
                                     (dx * dy).mean((1, 2))], 1) / 10], 1)


def test_synthetic_classes_are_learnable_but_not_by_pixel_averages():
    train = ns.data.SyntheticCIFAR(train=True)
    test = ns.data.SyntheticCIFAR(train=False)
    features = _colour_and_orientation_features
    accuracy = _nearest_mean_accuracy(features(train.images), train.labels,
                                      features(test.images), test.labels)
    assert accuracy > 0.5  # chance is 0.1: colour and orientation carry the class
    flat = lambda d: d.images.reshape(len(d), -1).astype(np.float64)
    pixel_accuracy = _nearest_mean_accuracy(flat(train), train.labels, flat(test), test.labels)
    assert pixel_accuracy < 0.3  # random phase and position: the class mean image is blurred


# ---------------------------------------------------------------- transforms

def _reference_crop(images, padding, offsets):
    """Slow per-image pad-and-crop with the same offsets."""
    out = np.empty_like(images)
    h, w = images.shape[2:]
    for n, (dy, dx) in enumerate(offsets):
        padded = np.zeros((images.shape[1], h + 2 * padding, w + 2 * padding), images.dtype)
        padded[:, padding:padding + h, padding:padding + w] = images[n]
        out[n] = padded[:, dy:dy + h, dx:dx + w]
    return out


@pytest.mark.parametrize("padding", [0, 1, 4])
def test_random_crop_matches_per_image_reference(padding):
    images = np.random.default_rng(0).integers(1, 256, (40, 3, 32, 32)).astype(np.uint8)
    crops = ns.data.random_crop(images, padding, np.random.default_rng(7))
    offsets = np.random.default_rng(7).integers(0, 2 * padding + 1, size=(40, 2))
    np.testing.assert_array_equal(crops, _reference_crop(images, padding, offsets))
    assert crops.dtype == np.uint8 and crops.shape == images.shape


def test_random_crop_shifts_content_and_pads_with_zeros():
    images = np.random.default_rng(1).integers(1, 256, (200, 3, 32, 32)).astype(np.uint8)
    crops = ns.data.random_crop(images, 4, np.random.default_rng(2))
    offsets = np.random.default_rng(2).integers(0, 9, size=(200, 2))
    assert len({tuple(o) for o in offsets}) > 40  # many different shifts are drawn
    for n, (dy, dx) in enumerate(offsets):
        shift_y, shift_x = 4 - dy, 4 - dx   # content moves down/right by the shift
        src = images[n, :, max(0, -shift_y):32 - max(0, shift_y), max(0, -shift_x):32 - max(0, shift_x)]
        dst = crops[n, :, max(0, shift_y):32 - max(0, -shift_y), max(0, shift_x):32 - max(0, -shift_x)]
        np.testing.assert_array_equal(dst, src)
        # the uncovered border is exactly the zero padding (the images have no zeros)
        assert (crops[n] == 0).sum() == 3 * (32 * 32 - src.shape[1] * src.shape[2])


def test_random_flip_reverses_width_for_about_half():
    images = np.random.default_rng(3).integers(0, 256, (400, 3, 8, 8)).astype(np.uint8)
    flipped = ns.data.random_flip(images, np.random.default_rng(4))
    chosen = np.random.default_rng(4).random(400) < 0.5
    np.testing.assert_array_equal(flipped[chosen], images[chosen][..., ::-1])
    np.testing.assert_array_equal(flipped[~chosen], images[~chosen])
    assert 150 < chosen.sum() < 250
    assert images.base is None or not np.shares_memory(images, flipped)


def test_normalize_and_channel_stats():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (64, 3, 8, 8)).astype(np.uint8)
    mean, std = ns.data.channel_stats(images, chunk=10)  # several chunks
    x = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-5)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == (3,)
    out = ns.data.Normalize(mean, std)(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    expected = (images[:, 1] / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(ns.data.Normalize([0, 0.5, 0], [1, 0.25, 1])(images)[:, 1],
                               expected, rtol=1e-6, atol=1e-6)
    # floats in [0, 255] give the same result as uint8
    np.testing.assert_allclose(ns.data.Normalize(mean, std)(images.astype(np.float32)), out)
    with pytest.raises(ValueError, match="3 channels"):
        ns.data.Normalize(mean, std)(images[:, :2])


def test_cifar10_constants_are_the_published_values():
    np.testing.assert_allclose(ns.data.CIFAR10_MEAN, [0.4914, 0.4822, 0.4465], atol=1e-4)
    np.testing.assert_allclose(ns.data.CIFAR10_STD, [0.2470, 0.2435, 0.2616], atol=1e-4)


# ---------------------------------------------------------------- BatchLoader

def _loader(images, labels, **options):
    settings = dict(batch_size=32, shuffle=True, augment=True,
                    normalize=ns.data.Normalize([0.5] * 3, [0.25] * 3), seed=11)
    settings.update(options)
    return ns.data.BatchLoader(images, labels, settings.pop("batch_size"), **settings)


@pytest.fixture(scope="module")
def small():
    data = ns.data.SyntheticCIFAR(num_samples=100, seed=3)
    # label each image by its index so batches reveal which samples they hold
    return data.images, np.arange(100, dtype=np.int64)


def test_loader_covers_every_sample_once_per_epoch(small):
    images, labels = small
    loader = _loader(images, labels, augment=False)
    assert len(loader) == 4
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [len(y) for _, y in batches] == [32, 32, 32, 4]
        seen = np.concatenate([y for _, y in batches])
        assert sorted(seen.tolist()) == list(range(100))
        epochs.append(seen)
        for x, y in batches:
            assert x.dtype == np.float32 and x.shape[1:] == (3, 32, 32) and y.dtype == np.int64
            np.testing.assert_allclose(x, ns.data.Normalize([0.5] * 3, [0.25] * 3)(images[y]))
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled
    assert not np.array_equal(epochs[0], np.arange(100))


def test_loader_without_shuffle_keeps_order_and_drop_last(small):
    images, labels = small
    loader = _loader(images, labels, shuffle=False, augment=False, normalize=None,
                     drop_last=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), np.arange(96))
    np.testing.assert_allclose(batches[0][0], images[:32] / np.float32(255))


def test_loader_is_reproducible_from_its_seed(small):
    images, labels = small
    runs = [[(x.copy(), y.copy()) for _ in range(2) for x, y in _loader(images, labels)]
            for _ in range(2)]
    for (x1, y1), (x2, y2) in zip(*runs):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other = [y for x, y in _loader(images, labels, seed=12)]
    assert not np.array_equal(np.concatenate(other), np.concatenate([y for _, y in runs[0][:4]]))


def test_loader_augments_with_crops_and_flips(small):
    images, labels = small
    loader = _loader(images, labels, shuffle=False, normalize=None, batch_size=100)
    x, y = next(iter(loader))
    plain = images / np.float32(255)
    assert not np.allclose(x, plain)
    assert (x == 0).any()  # padded borders from the crops


@pytest.mark.parametrize("stop_after", [0, 2, 4])  # an epoch's start, mid-epoch, its end
def test_loader_resumes_bit_for_bit(small, stop_after):
    images, labels = small
    original = _loader(images, labels)
    list(original)  # one full epoch
    iterator = iter(original)
    for _ in range(stop_after):
        next(iterator)
    state = json.loads(json.dumps(original.state_dict()))  # survives a JSON round trip
    upcoming = 6  # the next batches, across an epoch boundary
    expected = [(x.copy(), y.copy()) for x, y in itertools.chain(iterator, original, original)]
    restored = _loader(images, labels, seed=999)  # another seed: the saved state wins
    restored.load_state_dict(state)
    resumed = [(x.copy(), y.copy()) for x, y in itertools.chain(restored, restored)]
    assert len(expected) >= upcoming and len(resumed) >= upcoming
    for (x1, y1), (x2, y2) in zip(expected[:upcoming], resumed[:upcoming]):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    fresh = [y for _, y in _loader(images, labels)]  # and it is not just the first epoch again
    assert not np.array_equal(np.concatenate(fresh), np.concatenate([y for _, y in resumed[:4]]))


def test_loader_delivers_batches_on_the_device(small, device):
    images, labels = small
    loader = _loader(images, labels, device=device)
    x, y = next(iter(loader))
    xp = ns.backend.array_module_for(device)
    assert isinstance(x, xp.ndarray) and isinstance(y, xp.ndarray)
    assert x.dtype == np.float32 and y.dtype == np.int64
    on_cpu = next(iter(_loader(images, labels, device="cpu")))
    np.testing.assert_array_equal(ns.backend.to_numpy(x), on_cpu[0])  # same batches everywhere


def test_loader_rejects_bad_arguments(small):
    images, labels = small
    with pytest.raises(ValueError, match="one per image"):
        _loader(images, labels[:-1])
    with pytest.raises(ValueError, match="batch_size"):
        _loader(images, labels, batch_size=0)
    with pytest.raises(ValueError, match="Normalize"):
        _loader(images, labels, normalize="yes")


def test_standard_augment_is_crop_then_flip():
    images = np.random.default_rng(8).integers(0, 256, (20, 3, 32, 32)).astype(np.uint8)
    rng = np.random.default_rng(9)
    expected = ns.data.random_flip(ns.data.random_crop(images, 4, rng), rng)
    np.testing.assert_array_equal(standard_augment(images, np.random.default_rng(9)), expected)
