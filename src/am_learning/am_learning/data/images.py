'''Camera frames from raw CDR bytes to training-resolution RGB arrays.

The fast path reads sensor_msgs/Image and sensor_msgs/CompressedImage straight from the
serialised bytes: the pixel buffer becomes a numpy view without any copy, instead of a full
deserialisation that copies it into a message object first. The naive path (full
deserialisation) is kept as the reference the fast path is tested and benchmarked against.
'''

import struct

import cv2
import numpy as np

# Pixel encodings an Image may carry: channels, and the cv2 conversion to RGB (None: is RGB).
ENCODINGS: dict[str, tuple[int, int | None]] = {
    'rgb8': (3, None),
    'bgr8': (3, cv2.COLOR_BGR2RGB),
    'mono8': (1, cv2.COLOR_GRAY2RGB),
    'rgba8': (4, cv2.COLOR_RGBA2RGB),
    'bgra8': (4, cv2.COLOR_BGRA2RGB),
}

_U32 = struct.Struct('<I')
_STAMP = struct.Struct('<iI')


class ImageDecodeError(ValueError):
    '''An image message that cannot be turned into an RGB frame (encoding, size, bytes).'''


def resize_rgb(image: np.ndarray, size: int) -> np.ndarray:
    '''(H, W, C) uint8 -> (size, size, C) with cv2.INTER_AREA (the policy node does the same).'''
    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def pixels_to_rgb(
    data: np.ndarray | bytes | memoryview, height: int, width: int, encoding: str, step: int,
    size: int,
) -> np.ndarray:
    '''Raw Image pixels -> (size, size, 3) uint8 RGB. Resizes before converting colours
    (fewer pixels to convert; the area average commutes with the channel permutation).'''
    if encoding not in ENCODINGS:
        raise ImageDecodeError(
            f'unsupported image encoding {encoding!r} (supported: {", ".join(ENCODINGS)})'
        )
    channels, conversion = ENCODINGS[encoding]
    buf = np.frombuffer(data, dtype=np.uint8)
    if height <= 0 or width <= 0 or step < width * channels or len(buf) < step * height:
        raise ImageDecodeError(
            f'image of {width}x{height} {encoding} with step {step} does not fit '
            f'{len(buf)} bytes of data'
        )
    rows = buf[: step * height].reshape(height, step)[:, : width * channels]
    image = rows.reshape(height, width, channels) if channels > 1 else rows
    small = resize_rgb(image, size)
    if conversion is not None:
        small = cv2.cvtColor(small, conversion)
    return small


def compressed_to_rgb(data: np.ndarray | bytes | memoryview, fmt: str, size: int) -> np.ndarray:
    '''CompressedImage bytes (jpeg or png, any `format` string) -> (size, size, 3) RGB.

    JPEGs at least twice the target size are decoded at 1/2, 1/4 or 1/8 scale by the decoder
    itself (the largest scale that stays at or above the target; cheaper than a full decode
    followed by a large downscale, and close to it: the DCT scaling averages blocks).'''
    buf = np.frombuffer(data, dtype=np.uint8)
    if len(buf) == 0:
        raise ImageDecodeError(f'empty compressed image (format {fmt!r})')
    flag = cv2.IMREAD_COLOR
    if _is_jpeg(buf):
        width, height = _jpeg_size(buf)
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if width and height and min(width, height) // factor >= size:
                flag = reduced
                break
    image = cv2.imdecode(buf, flag)
    if image is None:
        raise ImageDecodeError(f'could not decode compressed image (format {fmt!r})')
    return cv2.cvtColor(resize_rgb(image, size), cv2.COLOR_BGR2RGB)


def _is_jpeg(buf: np.ndarray) -> bool:
    return len(buf) > 3 and buf[0] == 0xFF and buf[1] == 0xD8


def _jpeg_size(buf: np.ndarray) -> tuple[int, int]:
    '''(width, height) from a JPEG's start-of-frame marker, (0, 0) when not found.'''
    data = buf.tobytes() if len(buf) < 65536 else buf[:65536].tobytes()
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return 0, 0
        marker = data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            return width, height
        pos += 2 + length
    return 0, 0


class _Cursor:
    '''Reads CDR (XCDR1, little endian) fields; alignment is relative to the payload start.'''

    __slots__ = ('buf', 'pos')

    def __init__(self, buf: bytes | memoryview) -> None:
        if len(buf) < 4 or buf[1] != 0x01:
            raise ImageDecodeError('not a little-endian CDR message (fast path needs CDR_LE)')
        self.buf = buf
        self.pos = 4

    def align(self, n: int) -> None:
        self.pos += (-(self.pos - 4)) % n

    def u32(self) -> int:
        self.align(4)
        value = _U32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return value

    def stamp_ns(self) -> int:
        sec, nanosec = _STAMP.unpack_from(self.buf, self.pos)
        self.pos += 8
        return sec * 1_000_000_000 + nanosec

    def string(self) -> str:
        length = self.u32()
        end = self.pos + length
        if length == 0 or end > len(self.buf):
            raise ImageDecodeError('corrupt CDR string')
        text = bytes(self.buf[self.pos : end - 1]).decode()
        self.pos = end
        return text

    def u8(self) -> int:
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def blob(self) -> memoryview:
        length = self.u32()
        end = self.pos + length
        if end > len(self.buf):
            raise ImageDecodeError(f'CDR sequence of {length} bytes runs past the message end')
        view = memoryview(self.buf)[self.pos : end]
        self.pos = end
        return view


def image_from_cdr(raw: bytes | memoryview, size: int) -> tuple[np.ndarray, int]:
    '''Fast path: sensor_msgs/Image CDR bytes -> ((size, size, 3) RGB, header stamp ns).'''
    cur = _Cursor(raw)
    try:
        stamp = cur.stamp_ns()
        cur.string()  # frame_id
        height = cur.u32()
        width = cur.u32()
        encoding = cur.string()
        cur.u8()  # is_bigendian: irrelevant for 8-bit encodings
        step = cur.u32()
        data = cur.blob()
    except (struct.error, IndexError, UnicodeDecodeError) as err:
        raise ImageDecodeError(f'truncated Image message: {err}') from None
    return pixels_to_rgb(data, height, width, encoding, step, size), stamp


def compressed_from_cdr(raw: bytes | memoryview, size: int) -> tuple[np.ndarray, int]:
    '''Fast path: sensor_msgs/CompressedImage CDR bytes -> ((size, size, 3) RGB, stamp ns).'''
    cur = _Cursor(raw)
    try:
        stamp = cur.stamp_ns()
        cur.string()  # frame_id
        fmt = cur.string()
        data = cur.blob()
    except (struct.error, IndexError, UnicodeDecodeError) as err:
        raise ImageDecodeError(f'truncated CompressedImage message: {err}') from None
    return compressed_to_rgb(data, fmt, size), stamp


def image_from_message(msg: object, size: int) -> np.ndarray:
    '''Naive path: a deserialised sensor_msgs/Image -> (size, size, 3) RGB, converting the
    colours at full resolution and then resizing (what the fast path is measured against).'''
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise ImageDecodeError(f'unsupported image encoding {encoding!r}')
    channels, conversion = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if len(data) < step * height or step < width * channels:
        raise ImageDecodeError('image data shorter than height * step')
    image = data[: step * height].reshape(height, step)[:, : width * channels]
    image = np.ascontiguousarray(image.reshape(height, width, channels).squeeze(-1)
                                 if channels == 1 else image.reshape(height, width, channels))
    if conversion is not None:
        image = cv2.cvtColor(image, conversion)
    return resize_rgb(image, size)


def compressed_from_message(msg: object, size: int) -> np.ndarray:
    '''Naive path: a deserialised sensor_msgs/CompressedImage -> (size, size, 3) RGB, decoded
    at full resolution.'''
    image = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageDecodeError(f'could not decode compressed image (format {msg.format!r})')
    return resize_rgb(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), size)
