'''Image augmentation for training: random shifts (DrQ, OGBench's visual agents).

Every image of one example (the observation, the next observation, the goal and the cut
s_i) moves by the same random offset, so what the network compares, where the gripper is in
the frame against where the goal image shows it, is unchanged; what it can no longer do is
key on exact pixel positions of single frames, which on a few tens of thousands of frames
is what TD learning overfits to.
'''

from dataclasses import replace

import torch

from am_learning.relabel import TensorBatch


def shift_offsets(batch_size: int, pad: int, prob: float, generator: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    '''(B, 2) int64 row and column offsets in [-pad, pad]; rows left unshifted with
    probability 1 - prob are (0, 0).'''
    offsets = torch.randint(-pad, pad + 1, (batch_size, 2), generator=generator,
                            device=device)
    if prob < 1.0:
        keep = torch.rand(batch_size, generator=generator, device=device) < prob
        offsets = offsets * keep.unsqueeze(1)
    return offsets


def shift_images(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    '''(B, H, W, C) images, each moved by its (row, column) offset; the border pixels are
    repeated into the uncovered edge (a replicate pad, then the crop).'''
    b, h, w, _ = images.shape
    rows = (torch.arange(h, device=images.device) - offsets[:, :1]).clamp_(0, h - 1)
    cols = (torch.arange(w, device=images.device) - offsets[:, 1:]).clamp_(0, w - 1)
    index = torch.arange(b, device=images.device)[:, None, None]
    return images[index, rows[:, :, None], cols[:, None, :]]


def shift_batch(batch: TensorBatch, pad: int, prob: float,
                generator: torch.Generator) -> TensorBatch:
    '''The batch with every example's images shifted by one random offset of at most `pad`
    pixels (with probability `prob`; see the module docstring).'''
    offsets = shift_offsets(batch.obs.shape[0], pad, prob, generator, batch.obs.device)
    cut_offsets = offsets if batch.cut_rows is None else offsets[batch.cut_rows]
    return replace(
        batch, obs=shift_images(batch.obs, offsets),
        next_obs=shift_images(batch.next_obs, offsets),
        goal=shift_images(batch.goal, offsets),
        cut_obs=None if batch.cut_obs is None else shift_images(batch.cut_obs, cut_offsets))
