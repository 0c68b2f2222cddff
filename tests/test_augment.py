"""Batched augmentation agrees with torchvision's transforms; the device loader is exact and replayable."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as TF
from conftest import DEVICES, synthetic_digits
from torchvision.transforms import InterpolationMode

import mnist
import utils


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
    expected = TF.resize(TF.center_crop(digits, 22), [28, 28], interpolation=InterpolationMode.BILINEAR,
                         antialias=False)
    n = len(digits)
    ours = utils.affine_warp(utils.blank_outside_center(digits, 22), torch.zeros(n), torch.full((n,), 22 / 28))
    assert (ours - expected)[..., 1:-1, 1:-1].abs().max() < 1e-5
    assert (ours - expected).abs().mean() < 2e-3  # the outermost ring blends with black, not a copied edge


def test_crop_then_rotation_in_one_warp_matches_torchvision(digits) -> None:
    digits = torch.where(digits > 0.5, digits, 0)  # strokes only: compare the geometry, not the noise
    n = len(digits)
    blanked = utils.blank_outside_center(digits, 22)
    ours = utils.affine_warp(blanked, torch.full((n,), 10.0), torch.full((n,), 22 / 28))
    # the same single warp in torchvision (its affine angle is clockwise): rotate and zoom 28/22 about the centre
    single = TF.affine(blanked, angle=-10.0, translate=[0, 0], scale=28 / 22, shear=[0.0],
                       interpolation=InterpolationMode.BILINEAR, fill=0)
    assert (ours - single).abs().max() < 1e-4
    # the seed's two steps (CenterCrop(22) + Resize(28), then RandomRotation) interpolate twice
    two_steps = TF.rotate(TF.resize(TF.center_crop(digits, 22), [28, 28], antialias=False), 10.0,
                          interpolation=InterpolationMode.BILINEAR, fill=0)
    assert (ours - two_steps).abs().mean() < 1e-2


def test_shift_moves_content_right_and_down(digits) -> None:
    n = len(digits)
    shifted = utils.affine_warp(digits, torch.zeros(n), torch.ones(n), torch.tensor([[2 / 28, 3 / 28]] * n))
    torch.testing.assert_close(shifted[..., 3:, 2:], digits[..., :-3, :-2], atol=1e-5, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_augment_batch_is_random_per_image_and_seeded(digits, device) -> None:
    aug, digits = utils.Augment(crop_p=0.5), digits.to(device)
    a = utils.augment_batch(digits, aug, torch.Generator(device).manual_seed(1))
    b = utils.augment_batch(digits, aug, torch.Generator(device).manual_seed(1))
    c = utils.augment_batch(digits, aug, torch.Generator(device).manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    same = utils.augment_batch(digits[:1].repeat(4, 1, 1, 1), aug, torch.Generator(device).manual_seed(3))
    assert not torch.equal(same[0], same[1])  # one warp per image, not one per batch
    assert a.min() >= 0 and a.max() <= 1  # the fill is black (0), like the seed's fill=0


def test_stroke_changes_the_pen_width_both_ways_and_nothing_else(digits) -> None:
    def augmented(seed: int, **settings) -> torch.Tensor:
        return utils.augment_batch(digits, utils.Augment(**settings), torch.Generator().manual_seed(seed))

    def ink(x: torch.Tensor) -> torch.Tensor:  # stroke pixels per image
        return (x > 0.5).sum(dim=(1, 2, 3)).float()

    change = ink(augmented(4, degrees=0.0, crop_p=0.0, stroke=1.0)) - ink(augmented(4, degrees=0.0, crop_p=0.0))
    assert (change > 0).any() and (change < 0).any()  # some images thicker, some finer: a random pen per image
    assert augmented(4, stroke=1.0).min() >= 0 and augmented(4, stroke=1.0).max() <= 1
    # the warps are drawn first: with a (vanishing) pen change, the same seed gives the same rotations as without
    assert (augmented(9, crop_p=0.0) - augmented(9, crop_p=0.0, stroke=1e-6)).abs().max() < 1e-4


def test_lowres_blurs_a_share_of_the_images_at_full_contrast(digits) -> None:
    plain = utils.augment_batch(digits, utils.Augment(), torch.Generator().manual_seed(4))
    blurred = utils.augment_batch(digits, utils.Augment(lowres=0.5), torch.Generator().manual_seed(4))
    changed = (blurred - plain).abs().amax(dim=(1, 2, 3)) > 1e-6
    assert changed.any() and not changed.all()  # a random share of the batch, the rest exactly as before
    edges = (blurred[:, :, 1:] - blurred[:, :, :-1]).abs().amax(dim=(1, 2, 3))
    sharp = (plain[:, :, 1:] - plain[:, :, :-1]).abs().amax(dim=(1, 2, 3))
    assert (edges[changed] < sharp[changed]).all()  # softer steps between pixels, as an enlarged small scan has
    torch.testing.assert_close(blurred[changed].amax(dim=(1, 2, 3)), torch.ones(int(changed.sum())))
    assert blurred.min() >= 0
    everything = utils.augment_batch(digits, utils.Augment(lowres=0.999), torch.Generator().manual_seed(4))
    assert ((everything - plain).abs().amax(dim=(1, 2, 3)) > 1e-6).all()


def test_lowres_min_sets_the_smallest_scan_side_and_old_runs_keep_ten(digits) -> None:
    settings = {"degrees": 15.0, "crop_p": 0.1, "translate": 0.0, "scale_min": 1.0, "scale_max": 1.0, "lowres": 0.3}
    assert utils.Augment.from_settings({**settings, "lowres_min": 6}).lowres_sides == (6, 20)
    assert utils.Augment.from_settings(settings).lowres_sides == (10, 20)  # saved before the flag existed

    def steps(side: int) -> torch.Tensor:  # the largest step between neighbouring pixels, per image
        x = utils.augment_batch(digits, utils.Augment(lowres=0.999, lowres_sides=(side, side)),
                                torch.Generator().manual_seed(4))
        return (x[:, :, 1:] - x[:, :, :-1]).abs().amax(dim=(1, 2, 3))

    assert (steps(5) < steps(20)).all()  # a smaller scan: softer when enlarged back to 28 px


def test_elastic_bends_each_image_its_own_way_by_a_few_pixels(digits) -> None:
    def augmented(seed: int, **settings) -> torch.Tensor:
        return utils.augment_batch(digits, utils.Augment(**{"degrees": 0.0, "crop_p": 0.0, **settings}),
                                   torch.Generator().manual_seed(seed))

    plain, bent = augmented(4), augmented(4, elastic=2.0)
    assert ((bent - plain).abs().amax(dim=(1, 2, 3)) > 0.1).all()  # every image bent, each its own way
    assert not torch.allclose(bent[0] - plain[0], bent[1] - plain[1])
    assert bent.min() >= 0 and bent.max() <= 1
    # points move about 2 px, not more (bicubic overshoots a little): the bent ink lies inside the plain ink grown 3 px
    grown = torch.nn.functional.max_pool2d(plain, 7, 1, 3)
    assert (bent <= grown + 1e-5).all()
    # a field of 1e-6 px is the plain warp: the same seed gives the same rotations as without it
    assert (augmented(9, degrees=15.0) - augmented(9, degrees=15.0, elastic=1e-6)).abs().max() < 1e-4


def test_shear_slants_each_image_its_own_way_and_none_keeps_the_old_warps(digits) -> None:
    bar = torch.zeros(1, 1, 28, 28)
    bar[..., 4:24, 13:15] = 1  # an upright stroke
    leaning = utils.affine_warp(bar, torch.zeros(1), torch.ones(1), shears=torch.tensor([0.3]))
    cols = lambda row: leaning[0, 0, row].nonzero().float().mean()  # noqa: E731  the stroke's column in a row
    assert cols(5) - cols(22) == pytest.approx(0.3 * 17, abs=1.0)  # the top is right of the foot: it leans right

    def augmented(seed: int, **settings) -> torch.Tensor:
        return utils.augment_batch(digits, utils.Augment(**{"degrees": 15.0, "crop_p": 0.1, **settings}),
                                   torch.Generator().manual_seed(seed))

    plain, slanted = augmented(4), augmented(4, shear=0.3)
    assert ((slanted - plain).abs().amax(dim=(1, 2, 3)) > 0.1).all()  # every image slanted, each its own way
    assert (augmented(9) - augmented(9, shear=1e-6)).abs().max() < 1e-4  # same rotations, crops and zooms as before
    old_run = {"degrees": 15.0, "crop_p": 0.1, "translate": 0.0, "scale_min": 1.0, "scale_max": 1.0}
    assert utils.Augment.from_settings(old_run).shear == 0.0  # saved before the flag: resumes without a slant


@pytest.mark.parametrize("device", DEVICES)
def test_loader_yields_each_image_once_normalized(device) -> None:
    images, labels = synthetic_digits(100, seed=1)
    images, labels = torch.from_numpy(images), torch.from_numpy(labels).long()
    loader = utils.DeviceLoader(images.to(device), labels.to(device), batch_size=32, shuffle=True, seed=4)
    batches = [(x.cpu(), y.cpu()) for x, y in loader.batches(epoch=1)]
    assert len(loader) == len(batches) == 4 and [len(y) for _, y in batches] == [32, 32, 32, 4]
    x = torch.cat([b[0] for b in batches])
    assert x.shape == (100, 1, 28, 28) and x.is_contiguous(memory_format=torch.channels_last)
    raw = torch.round((x * mnist.MNIST_STD + mnist.MNIST_MEAN) * 255).to(torch.uint8).squeeze(1)
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
    loader = utils.DeviceLoader(torch.from_numpy(images).to(device), torch.from_numpy(labels).long().to(device), 16,
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
    """--font-digits: about ``extra_share`` of the training images become extra ones (with their own labels), the
    same ones whatever batch a replay starts from; the epoch is still one pass over the training images."""
    images, labels = synthetic_digits(512, seed=2)
    images, labels = torch.from_numpy(images).to(device), torch.from_numpy(labels).long().to(device)
    extra_images = torch.zeros(5, 28, 28, dtype=torch.uint8, device=device)  # blank "digits", label 10: easy to spot
    extra = (extra_images, torch.full((5,), 10, device=device))
    no_warp = utils.Augment(degrees=0.0, crop_p=0.0)
    loader = utils.DeviceLoader(images, labels, 32, shuffle=True, augment=no_warp, seed=7, chunk=chunk,
                                extra=extra, extra_share=0.25)
    full = list(loader.batches(epoch=2))
    x, y = torch.cat([b[0] for b in full]), torch.cat([b[1] for b in full])
    assert len(full) == len(loader) == 16 and len(y) == 512
    swapped = y == 10
    assert 0.17 < swapped.float().mean() < 0.33
    blank = float(mnist.normalize(torch.zeros(1, 28, 28)).flatten()[0])
    assert torch.all(x[swapped] == blank) and torch.all(x[~swapped].amax((1, 2, 3)) > blank)
    for (xa, ya), (xb, yb) in zip(full[5:], loader.batches(epoch=2, start=5), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    plain = utils.DeviceLoader(images, labels, 32, shuffle=True, augment=no_warp, seed=7, chunk=chunk)
    assert torch.equal(torch.cat([b[1] for b in plain.batches(epoch=2)])[~swapped], y[~swapped])
    with pytest.raises(ValueError, match="extra_share needs extra images"):
        utils.DeviceLoader(images, labels, 32, extra_share=0.1)


def test_a_flag_starts_at_the_top_of_a_one_and_runs_down_to_the_left() -> None:
    one = torch.zeros(3, 1, 28, 28)
    one[:, :, 4:24, 13:16] = 1.0  # a bare upright 1: 20 px tall, a 3 px pen
    picked = torch.tensor([True, False, True])
    u = torch.tensor([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]])  # shortest and steepest, unused, longest and flattest
    flagged = utils.add_flags(one, picked, u)
    assert torch.equal(flagged[1], one[1])  # not picked: untouched
    assert (flagged >= one).all()  # ink is only added, the stem stays
    for i, (longest, steepest) in ((0, (0.2, 35)), (2, (0.4, 65))):
        new = (flagged[i, 0] - one[i, 0]) > 0.5
        ys, xs = new.nonzero(as_tuple=True)
        assert len(ys) and xs.max() <= 14 and ys.min() >= 4  # left of the stem's centre, never above its top
        reach_x, reach_y = 14.5 - xs.min().item(), ys.max().item() - 4.5  # how far the flag goes, in px
        length = (reach_x**2 + reach_y**2) ** 0.5
        assert 20 * longest - 1 <= length <= 20 * longest + 2.5
        assert abs(math.degrees(math.atan2(reach_x, reach_y)) - steepest) < 12  # its angle to the stem
    # the flags run from one thing only: labels. Without a 1 among them a batch is warped exactly as without flags
    digits = torch.rand(4, 1, 28, 28)
    plain = utils.augment_batch(digits, utils.Augment(), torch.Generator().manual_seed(3), torch.full((4,), 7))
    sevens = utils.augment_batch(digits, utils.Augment(flag_ones=1.0), torch.Generator().manual_seed(3),
                                 torch.full((4,), 7))
    assert torch.equal(plain, sevens)
    ones = utils.augment_batch(digits, utils.Augment(flag_ones=1.0), torch.Generator().manual_seed(3),
                               torch.ones(4, dtype=torch.long))
    assert not torch.equal(plain, ones)
