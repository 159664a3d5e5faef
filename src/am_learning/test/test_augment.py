'''Random-shift augmentation: one offset per example, for all of its images.'''

from dataclasses import replace

import numpy as np
import pytest
import torch

from am_learning.augment import shift_batch, shift_images, shift_offsets
from am_learning.relabel import ObservationGatherer, RelabelSampler, gather
from am_learning.testing import make_point_dataset, tiny_config
from am_learning.train import Trainer


def test_a_shift_moves_the_content_and_repeats_the_edge() -> None:
    image = np.zeros((1, 8, 8, 3), np.uint8)
    image[0, 3, 4] = 200          # a dot
    image[0, :, 0] = 50           # the left column
    shifted = shift_images(torch.from_numpy(image), torch.tensor([[2, -3]]))[0].numpy()
    assert shifted[5, 1].tolist() == [200] * 3  # the dot moved 2 down, 3 left
    assert shifted[3, 4].tolist() == [0] * 3
    assert (shifted[:, 5:] == 0).all()          # the right edge repeats column 7 (dark)
    assert (shifted[:2] == shifted[2]).all()    # the top edge repeats the first row
    unshifted = shift_images(torch.from_numpy(image), torch.zeros(1, 2, dtype=torch.int64))
    assert (unshifted.numpy() == image).all()


def test_offsets_stay_within_the_pad_and_prob_leaves_the_rest_in_place() -> None:
    gen = torch.Generator().manual_seed(0)
    offsets = shift_offsets(4000, 3, 1.0, gen, torch.device('cpu'))
    assert offsets.min() == -3 and offsets.max() == 3
    assert len(torch.unique(offsets[:, 0])) == 7
    moved = (shift_offsets(4000, 3, 0.5, gen, torch.device('cpu')) != 0).any(1).float().mean()
    # Half are drawn to move, and 1/49 of those draw (0, 0).
    assert abs(moved - 0.5 * 48 / 49) < 0.03, moved


@pytest.fixture(scope='module')
def image_data():
    return make_point_dataset(8, 30, image_size=32, seed=2)


def test_every_image_of_an_example_moves_by_the_same_offset(image_data) -> None:
    sampler = RelabelSampler(image_data, tiny_config('image').relabel,
                             np.random.default_rng(0), gamma=0.85)
    gatherer = ObservationGatherer(image_data, 'image', torch.device('cpu'))
    batch = gather(sampler.sample(64), gatherer)
    assert batch.cut_rows is not None and len(batch.cut_rows) > 0
    out = shift_batch(batch, 3, 1.0, torch.Generator().manual_seed(7))
    offsets = shift_offsets(64, 3, 1.0, torch.Generator().manual_seed(7), torch.device('cpu'))
    for name in ('obs', 'next_obs', 'goal'):
        assert torch.equal(getattr(out, name), shift_images(getattr(batch, name), offsets))
    assert torch.equal(out.cut_obs, shift_images(batch.cut_obs, offsets[batch.cut_rows]))
    assert torch.equal(out.proprio, batch.proprio) and torch.equal(out.action, batch.action)
    # With every row (the CUDA graph's fixed shapes) the cut rows take every offset.
    full = replace(batch, cut_obs=batch.obs, cut_rows=None)
    out = shift_batch(full, 3, 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(out.cut_obs, out.obs)


def test_out_of_range_shifts_are_refused(image_data) -> None:
    with pytest.raises(ValueError, match='augment_shift_px'):
        tiny_config('image', 32).with_overrides({'augment_shift_px': 16}).validate()
    with pytest.raises(ValueError, match='augment_shift_px'):
        tiny_config('state').with_overrides({'augment_shift_px': 2}).validate()
    with pytest.raises(ValueError, match='augment_prob'):
        tiny_config('image').with_overrides({'augment_prob': 1.5}).validate()


def test_training_with_shifts_still_fits_one_step_goals(image_data) -> None:
    '''Goals one step ahead from pixels, every example shifted: Q of the dataset's actions
    rises above Q of random goals.'''
    cfg = tiny_config('image', 32, updates=300, seed=1).with_overrides(
        {'augment_shift_px': 2, 'relabel.max_cut_length': 1})
    row = Trainer(cfg, image_data).train()
    assert row['diag/q_offset_1'] > row['diag/q_random_goal'] + 0.3, row
