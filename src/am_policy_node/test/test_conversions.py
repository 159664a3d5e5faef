'''Image <-> numpy conversions: every encoding, padding, and every malformed message.'''

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from am_policy_node.conversions import (
    ImageError,
    decode,
    image_to_rgb,
    read_image_file,
    rgb_to_compressed,
    rgb_to_image,
)


def _rgb(h: int = 5, w: int = 7) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _msg(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    rows = np.concatenate([rows, np.full((h, pad), 255, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


def test_rgb_round_trip_keeps_pixels_and_stamp() -> None:
    rgb = _rgb()
    msg = rgb_to_image(rgb, frame_id='camera')
    msg.header.stamp.sec, msg.header.stamp.nanosec = 3, 500_000_000
    assert (msg.encoding, msg.step, msg.height, msg.width) == ('rgb8', 21, 5, 7)
    decoded = decode(msg)
    np.testing.assert_array_equal(decoded.rgb, rgb)
    assert decoded.stamp_s == pytest.approx(3.5)
    assert decoded.rgb.flags['C_CONTIGUOUS'] and decoded.rgb.flags['OWNDATA']


@pytest.mark.parametrize('encoding,make', [
    ('bgr8', lambda rgb: rgb[..., ::-1]),
    ('8UC3', lambda rgb: rgb[..., ::-1]),
    ('rgba8', lambda rgb: np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], 2)),
    ('bgra8', lambda rgb: np.concatenate([rgb[..., ::-1], np.zeros(rgb.shape[:2] + (1,),
                                                                  np.uint8)], 2)),
])
def test_color_encodings_become_rgb(encoding, make) -> None:
    rgb = _rgb()
    np.testing.assert_array_equal(image_to_rgb(_msg(np.ascontiguousarray(make(rgb)),
                                                    encoding)), rgb)


def test_mono8_is_replicated_and_padded_rows_are_cut() -> None:
    grey = _rgb()[..., 0]
    out = image_to_rgb(_msg(grey[..., None], 'mono8', pad=3))
    assert out.shape == (5, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_padded_rgb_rows() -> None:
    rgb = _rgb(4, 6)
    np.testing.assert_array_equal(image_to_rgb(_msg(rgb, 'rgb8', pad=6)), rgb)


@pytest.mark.parametrize('mutate,match', [
    (lambda m: setattr(m, 'encoding', '16UC1'), 'unsupported encoding'),
    (lambda m: setattr(m, 'encoding', 'bayer_rggb8'), 'unsupported encoding'),
    (lambda m: setattr(m, 'data', b''), 'empty data'),
    (lambda m: setattr(m, 'step', 20), 'step 20 is smaller'),
    (lambda m: setattr(m, 'step', 22), 'data has 105 bytes'),
    (lambda m: setattr(m, 'height', 6), 'data has 105 bytes'),
    (lambda m: setattr(m, 'width', 0), 'empty image'),
    (lambda m: setattr(m, 'data', b'\0' * 104), 'data has 104 bytes'),
])
def test_bad_messages_are_rejected_with_the_reason(mutate, match) -> None:
    msg = rgb_to_image(_rgb())
    mutate(msg)
    with pytest.raises(ImageError, match=match):
        image_to_rgb(msg)


@pytest.mark.parametrize('fmt', ['png', 'jpeg'])
def test_compressed_round_trip(fmt) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8, :, 0] = 200  # red top half, blue bottom half: channel order must survive
    rgb[8:, :, 2] = 200
    out = decode(rgb_to_compressed(rgb, fmt)).rgb
    assert out.shape == rgb.shape
    # jpeg blurs colour across the edge between the halves: compare away from it.
    rows = np.r_[0:5, 11:16]
    assert np.abs(out[rows].astype(int) - rgb[rows]).max() <= (0 if fmt == 'png' else 20)


def test_corrupt_and_empty_compressed_are_rejected() -> None:
    with pytest.raises(ImageError, match='empty data'):
        decode(CompressedImage(format='png'))
    bad = CompressedImage(format='jpeg')
    bad.data = b'not a jpeg at all'
    with pytest.raises(ImageError, match='cannot decode'):
        decode(bad)


def test_read_image_file(tmp_path) -> None:
    import cv2

    rgb = _rgb(9, 11)
    cv2.imwrite(str(tmp_path / 'goal.png'), rgb[..., ::-1])
    np.testing.assert_array_equal(read_image_file(tmp_path / 'goal.png'), rgb)
    (tmp_path / 'junk.png').write_bytes(b'junk')
    with pytest.raises(ImageError, match='cannot read'):
        read_image_file(tmp_path / 'junk.png')
    with pytest.raises(ImageError):
        rgb_to_image(np.zeros((4, 4), np.uint8))
