"""Batched augmentation agrees with torchvision; the device loader is exact and replayable."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF
from conftest import DEVICES, synthetic_digits
from torchvision.transforms import InterpolationMode

import utils
from s5 import constants


@pytest.fixture
def digits() -> torch.Tensor:
    images, _ = synthetic_digits(8, seed=5)
    return torch.from_numpy(images).unsqueeze(1).float() / 255


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("angle", [-15.0, -7.5, 4.0, 15.0])
def test_rotation_matches_torchvision(digits, angle, device) -> None:
    expected = TF.rotate(digits, angle, interpolation=InterpolationMode.BILINEAR, fill=0)
    n = len(digits)
    ours = utils.affine_warp(digits.to(device), torch.full((n,), angle, device=device),
                             torch.ones(n, device=device)).cpu()
    assert (ours - expected).abs().mean() < 2e-3
    assert (ours - expected).abs().max() < 0.05


def test_center_crop_then_resize_matches_torchvision(digits) -> None:
    expected = TF.resize(TF.center_crop(digits, 22), [28, 28],
                         interpolation=InterpolationMode.BILINEAR, antialias=False)
    n = len(digits)
    ours = utils.affine_warp(utils.blank_outside_center(digits, 22), torch.zeros(n),
                             torch.full((n,), 22 / 28))
    assert (ours - expected)[..., 1:-1, 1:-1].abs().max() < 1e-5
    assert (ours - expected).abs().mean() < 2e-3  # the outer ring blends with black, not the edge


def test_crop_then_rotation_in_one_warp_matches_torchvision(digits) -> None:
    digits = torch.where(digits > 0.5, digits, 0)  # strokes only: compare geometry, not noise
    n = len(digits)
    blanked = utils.blank_outside_center(digits, 22)
    ours = utils.affine_warp(blanked, torch.full((n,), 10.0), torch.full((n,), 22 / 28))
    # the same single warp in torchvision (its affine angle is clockwise): rotate, zoom 28/22
    single = TF.affine(blanked, angle=-10.0, translate=[0, 0], scale=28 / 22, shear=[0.0],
                       interpolation=InterpolationMode.BILINEAR, fill=0)
    assert (ours - single).abs().max() < 1e-4
    # the seed's two steps (CenterCrop(22) + Resize(28), then RandomRotation) interpolate twice
    two_steps = TF.rotate(TF.resize(TF.center_crop(digits, 22), [28, 28], antialias=False),
                          10.0, interpolation=InterpolationMode.BILINEAR, fill=0)
    assert (ours - two_steps).abs().mean() < 1e-2


def test_shift_moves_content_right_and_down(digits) -> None:
    n = len(digits)
    shifted = utils.affine_warp(digits, torch.zeros(n), torch.ones(n),
                                torch.tensor([[2 / 28, 3 / 28]] * n))
    torch.testing.assert_close(shifted[..., 3:, 2:], digits[..., :-3, :-2], atol=1e-5, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_augment_batch_is_random_per_image_and_seeded(digits, device) -> None:
    aug, digits = utils.Augment(crop_p=0.5), digits.to(device)
    a = utils.augment_batch(digits, aug, torch.Generator(device).manual_seed(1))
    b = utils.augment_batch(digits, aug, torch.Generator(device).manual_seed(1))
    c = utils.augment_batch(digits, aug, torch.Generator(device).manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    same = utils.augment_batch(digits[:1].repeat(4, 1, 1, 1), aug,
                               torch.Generator(device).manual_seed(3))
    assert not torch.equal(same[0], same[1])  # one warp per image, not one per batch
    assert a.min() >= 0 and a.max() <= 1  # the fill is black (0), like the seed's fill=0


def test_lowres_blurs_a_share_of_the_images_at_full_contrast(digits) -> None:
    plain = utils.augment_batch(digits, utils.Augment(), torch.Generator().manual_seed(4))
    blurred = utils.augment_batch(digits, utils.Augment(lowres=0.5),
                                  torch.Generator().manual_seed(4))
    changed = (blurred - plain).abs().amax(dim=(1, 2, 3)) > 1e-6
    assert changed.any() and not changed.all()  # a random share of the batch, the rest as before
    edges = (blurred[:, :, 1:] - blurred[:, :, :-1]).abs().amax(dim=(1, 2, 3))
    sharp = (plain[:, :, 1:] - plain[:, :, :-1]).abs().amax(dim=(1, 2, 3))
    assert (edges[changed] < sharp[changed]).all()  # softer steps, as in an enlarged small scan
    torch.testing.assert_close(blurred[changed].amax(dim=(1, 2, 3)), torch.ones(int(changed.sum())))
    assert blurred.min() >= 0
    everything = utils.augment_batch(digits, utils.Augment(lowres=0.999),
                                     torch.Generator().manual_seed(4))
    assert ((everything - plain).abs().amax(dim=(1, 2, 3)) > 1e-6).all()


@pytest.mark.parametrize("device", DEVICES)
def test_loader_yields_each_image_once_normalized(device) -> None:
    images, labels = synthetic_digits(100, seed=1)
    images, labels = torch.from_numpy(images), torch.from_numpy(labels).long()
    loader = utils.DeviceLoader(images.to(device), labels.to(device), batch_size=32, shuffle=True,
                                seed=4)
    batches = [(x.cpu(), y.cpu()) for x, y in loader.batches(epoch=1)]
    assert len(loader) == len(batches) == 4 and [len(y) for _, y in batches] == [32, 32, 32, 4]
    x = torch.cat([b[0] for b in batches])
    assert x.shape == (100, 1, 28, 28) and x.is_contiguous(memory_format=torch.channels_last)
    pixels = x * constants.MNIST_STD + constants.MNIST_MEAN
    raw = torch.round(pixels * 255).to(torch.uint8).squeeze(1)
    order = sorted(range(100), key=lambda i: raw[i].numpy().tobytes())
    expected = sorted(range(100), key=lambda i: images[i].numpy().tobytes())
    assert torch.equal(raw[order], images[expected])
    first_epoch = torch.cat([y for _, y in batches])
    second_epoch = torch.cat([y.cpu() for _, y in loader.batches(epoch=2)])
    assert not torch.equal(first_epoch, second_epoch)  # reshuffled every epoch


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("chunk", [1, 4])  # batches warped together (a GPU takes several at once)
def test_loader_batches_replay_exactly_from_any_start(device, chunk) -> None:
    images, labels = synthetic_digits(96, seed=2)
    loader = utils.DeviceLoader(torch.from_numpy(images).to(device),
                                torch.from_numpy(labels).long().to(device), 16,
                                shuffle=True, augment=utils.Augment(), seed=7, chunk=chunk)
    full = list(loader.batches(epoch=3))
    assert len(full) == 6 and all(len(y) == 16 for _, y in full)
    for start in (4, 5):  # a chunk's first batch, and one inside it (with chunk=4)
        tail = list(loader.batches(epoch=3, start=start))
        assert len(tail) == 6 - start
        for (xa, ya), (xb, yb) in zip(full[start:], tail, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("chunk", [1, 4])
def test_loader_swaps_a_share_of_images_for_extra_ones_with_their_labels(device, chunk) -> None:
    """--font-digits: about ``extra_share`` of the training images become extra ones (with their
    own labels), the same ones whatever batch a replay starts from; the epoch is still one pass
    over the training images."""
    images, labels = synthetic_digits(512, seed=2)
    images, labels = (torch.from_numpy(images).to(device),
                      torch.from_numpy(labels).long().to(device))
    # blank "digits", label 10: easy to spot
    extra_images = torch.zeros(5, 28, 28, dtype=torch.uint8, device=device)
    extra = (extra_images, torch.full((5,), 10, device=device))
    no_warp = utils.Augment(degrees=0.0, crop_p=0.0)
    loader = utils.DeviceLoader(images, labels, 32, shuffle=True, augment=no_warp, seed=7,
                                chunk=chunk, extra=extra, extra_share=0.25)
    full = list(loader.batches(epoch=2))
    x, y = torch.cat([b[0] for b in full]), torch.cat([b[1] for b in full])
    assert len(full) == len(loader) == 16 and len(y) == 512
    swapped = y == 10
    assert 0.17 < swapped.float().mean() < 0.33
    blank = float(utils.normalize(torch.zeros(1, 28, 28)).flatten()[0])
    assert torch.all(x[swapped] == blank) and torch.all(x[~swapped].amax((1, 2, 3)) > blank)
    for (xa, ya), (xb, yb) in zip(full[5:], loader.batches(epoch=2, start=5), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    plain = utils.DeviceLoader(images, labels, 32, shuffle=True, augment=no_warp, seed=7,
                               chunk=chunk)
    assert torch.equal(torch.cat([b[1] for b in plain.batches(epoch=2)])[~swapped], y[~swapped])
    with pytest.raises(ValueError, match="extra_share needs extra images"):
        utils.DeviceLoader(images, labels, 32, extra_share=0.1)


