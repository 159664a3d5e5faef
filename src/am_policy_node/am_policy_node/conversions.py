'''sensor_msgs Image / CompressedImage <-> numpy, with every check a goal image needs.

The policy consumes (H, W, 3) uint8 RGB arrays. Camera and goal images arrive as ROS
messages whose fields (encoding, step, data length) can be wrong; a bad message must be
rejected with a message that says what is wrong, never turned into a garbled array.
No rclpy here: message classes are plain Python objects, built and read without a ROS graph.
'''

from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

# encoding -> (channels, how to get RGB from it)
_ENCODINGS: dict[str, int] = {
    'rgb8': 3,
    'bgr8': 3,
    'rgba8': 4,
    'bgra8': 4,
    'mono8': 1,
    '8UC3': 3,  # OpenCV's name for an untyped 3-channel image: taken as BGR, as cv_bridge does
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)


class ImageError(ValueError):
    '''An image message that cannot be turned into an RGB array; the text says why.'''


@dataclass(frozen=True)
class DecodedImage:
    '''An RGB image taken from a message, with the message's stamp (seconds, 0 if unset).'''

    rgb: np.ndarray
    '''(H, W, 3) uint8 RGB, C-contiguous, owned (not a view of the message buffer).'''
    stamp_s: float


def _stamp_s(msg: Image | CompressedImage) -> float:
    return float(msg.header.stamp.sec) + 1e-9 * float(msg.header.stamp.nanosec)


def _as_bytes(data: object) -> np.ndarray:
    '''A message's uint8[] field (array.array, bytes or a list) as a flat uint8 array.'''
    if isinstance(data, list | tuple):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def image_to_rgb(msg: Image) -> np.ndarray:
    '''sensor_msgs/Image -> (H, W, 3) uint8 RGB. Raises ImageError on any inconsistency.

    Accepted encodings: rgb8, bgr8, rgba8, bgra8, mono8 (and 8UC3 as BGR). Rows may be
    padded (step > width * channels); the data length must be exactly step * height.
    '''
    encoding = msg.encoding
    if encoding not in _ENCODINGS:
        raise ImageError(
            f'unsupported encoding {encoding!r} (supported: {", ".join(SUPPORTED_ENCODINGS)})'
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = msg.data
    if height <= 0 or width <= 0:
        raise ImageError(f'empty image: {width}x{height}')
    if len(data) == 0:
        raise ImageError(f'empty data for a {width}x{height} {encoding} image')
    channels = _ENCODINGS[encoding]
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageError(
            f'step {step} is smaller than width * channels = {width} * {channels} = {row_bytes}'
        )
    if len(data) != step * height:
        raise ImageError(
            f'data has {len(data)} bytes, step * height = {step} * {height} = {step * height}'
        )
    buffer = _as_bytes(data)
    rows = buffer.reshape(height, step)[:, :row_bytes]
    pixels = rows.reshape(height, width, channels)
    if encoding == 'rgb8':
        rgb = pixels
    elif encoding in ('bgr8', '8UC3'):
        rgb = pixels[..., ::-1]
    elif encoding == 'rgba8':
        rgb = pixels[..., :3]
    elif encoding == 'bgra8':
        rgb = pixels[..., 2::-1]
    else:  # mono8
        rgb = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(rgb).copy()


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    '''sensor_msgs/CompressedImage (jpeg/png, as image_transport writes it) -> RGB.'''
    data = msg.data
    if len(data) == 0:
        raise ImageError(f'empty data in a compressed image (format {msg.format!r})')
    buffer = _as_bytes(data)
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageError(
            f'cannot decode {len(data)} bytes of compressed image (format {msg.format!r})'
        )
    if decoded.dtype != np.uint8:
        raise ImageError(f'compressed image decodes to {decoded.dtype}, only 8-bit is supported')
    return decoded_to_rgb(decoded)


def decoded_to_rgb(decoded: np.ndarray) -> np.ndarray:
    '''An array from cv2.imread/imdecode (BGR, BGRA or grey) -> (H, W, 3) uint8 RGB.'''
    if decoded.ndim == 2:
        return np.ascontiguousarray(np.repeat(decoded[..., None], 3, axis=2))
    if decoded.ndim == 3 and decoded.shape[2] == 3:
        return np.ascontiguousarray(decoded[..., ::-1])
    if decoded.ndim == 3 and decoded.shape[2] == 4:
        return np.ascontiguousarray(decoded[..., 2::-1])
    raise ImageError(f'decoded image has an unsupported shape {decoded.shape}')


def decode(msg: Image | CompressedImage) -> DecodedImage:
    '''Either image message -> DecodedImage; raises ImageError on bad input.'''
    if isinstance(msg, CompressedImage):
        rgb = compressed_to_rgb(msg)
    else:
        rgb = image_to_rgb(msg)
    return DecodedImage(rgb=rgb, stamp_s=_stamp_s(msg))


def rgb_to_image(rgb: np.ndarray, frame_id: str = '', stamp: object | None = None) -> Image:
    '''(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8 (step = 3 * width).'''
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f'need an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}')
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = 'rgb8'
    msg.is_bigendian = 0
    msg.step = 3 * msg.width
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def rgb_to_compressed(rgb: np.ndarray, fmt: str = 'png') -> CompressedImage:
    '''(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage (png or jpeg).'''
    ext = {'png': '.png', 'jpeg': '.jpg', 'jpg': '.jpg'}.get(fmt)
    if ext is None:
        raise ImageError(f'unsupported compression {fmt!r} (png or jpeg)')
    ok, encoded = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ImageError(f'cannot encode a {rgb.shape} image as {fmt}')
    msg = CompressedImage()
    msg.format = 'rgb8; png compressed bgr8' if fmt == 'png' else 'rgb8; jpeg compressed bgr8'
    msg.data = encoded.tobytes()
    return msg


def read_image_file(path: str) -> np.ndarray:
    '''An image file (png, jpg, ...) -> (H, W, 3) uint8 RGB; ImageError if unreadable.'''
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageError(f'cannot read an image from {path}')
    if decoded.dtype != np.uint8:
        raise ImageError(f'{path}: {decoded.dtype} images are not supported, only 8-bit')
    return decoded_to_rgb(decoded)
