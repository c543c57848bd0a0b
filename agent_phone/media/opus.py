"""libopus itself, through ctypes: an encoder we can steer and a decoder that
conceals.

aiortc encodes and decodes Opus through FFmpeg (PyAV), which exposes neither
libopus's packet-loss concealment (``opus_decode`` with no packet) nor its
in-band FEC (``opus_decode`` of the *next* packet with ``decode_fec=1``), nor
the encoder's FEC and expected-loss controls. So every side of Agent Phone
encodes and decodes its audio here, and hands aiortc encoded packets.

The library is the libopus that PyAV's wheel already carries (``av.libs/``;
1.6 when written), found next to the ``av`` package, so nothing new is
installed and the desktop bundle has it too; the system's ``libopus`` is the
fallback. ``opus_packet_has_lbrr`` needs libopus 1.5; with an older library
FEC is still tried, and a packet without FEC data decodes as concealment.

The control calls (``opus_encoder_ctl``) are C varargs. They are called with
fixed ``int`` arguments, which is how varargs ints are passed on x86-64 and
arm64 Linux and Windows; Apple's arm64 ABI passes varargs differently, so
each encoder reads its settings back once and refuses to run if they did not
take (``OpusError``), rather than encode with settings it did not ask for.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys
from pathlib import Path

import numpy as np

from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, SAMPLE_RATE

logger = logging.getLogger(__name__)

#: The longest Opus packet: 120 ms.
MAX_PACKET_SAMPLES = SAMPLE_RATE * 120 // 1000
#: Large enough for any single Opus packet we produce (RFC 6716 allows 1275 bytes a frame).
MAX_PACKET_BYTES = 1500

_APPLICATION_VOIP = 2048
_SIGNAL_VOICE = 3001
_SET_BITRATE = 4002
_SET_MAX_BANDWIDTH = 4004
_GET_BITRATE = 4003
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_GET_INBAND_FEC = 4013
_SET_PACKET_LOSS_PERC = 4014
_GET_PACKET_LOSS_PERC = 4015
_SET_DTX = 4016
_SET_SIGNAL = 4024
_RESET_STATE = 4028
#: ``OPUS_BANDWIDTH_*``: the audio band the encoder may code.
BANDWIDTHS = {"narrowband": 1101, "wideband": 1103, "superwideband": 1104, "fullband": 1105}


class OpusError(RuntimeError):
    """libopus is missing, refused a setting, or failed to encode or decode."""


def _candidates() -> list[str]:
    found: list[str] = []
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None:
        # The desktop bundle (packaging/): PyInstaller collects PyAV's copy
        # beside the executable's libraries.
        for folder in (Path(bundle), Path(bundle) / "av.libs", Path(bundle) / "av" / ".dylibs"):
            found += sorted(str(p) for p in folder.glob("*opus*.*") if p.is_file())
    try:
        import av

        site = Path(av.__file__).resolve().parent
        patterns = {
            "linux": [(site.parent / "av.libs", "libopus*.so*")],
            "darwin": [(site / ".dylibs", "libopus*.dylib")],
            "win32": [(site.parent / "av.libs", "opus*.dll"), (site, "opus*.dll")],
        }.get(sys.platform, [])
        for folder, pattern in patterns:
            found += sorted(str(p) for p in folder.glob(pattern))
    except ImportError:
        pass
    system = ctypes.util.find_library("opus")
    if system:
        found.append(system)
    return found


@functools.cache
def library() -> ctypes.CDLL:
    """libopus, loaded once (OpusError when there is none)."""
    errors = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        _declare(lib)
        logger.info("libopus: %s (%s)", version(lib), path)
        return lib
    raise OpusError("libopus not found" + (": " + "; ".join(errors) if errors else ""))


def version(lib: ctypes.CDLL | None = None) -> str:
    lib = lib or library()
    raw: bytes = lib.opus_get_version_string()
    return raw.decode()


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_void_p, c_char_p = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
    int_p = ctypes.POINTER(c_int)
    lib.opus_get_version_string.restype = c_char_p
    lib.opus_strerror.restype = c_char_p
    lib.opus_strerror.argtypes = [c_int]
    lib.opus_encoder_create.restype = c_void_p
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, c_int, c_int, int_p]
    lib.opus_encoder_destroy.argtypes = [c_void_p]
    lib.opus_encode.restype = ctypes.c_int32
    lib.opus_encode.argtypes = [c_void_p, c_void_p, c_int, c_char_p, ctypes.c_int32]
    lib.opus_decoder_create.restype = c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, c_int, int_p]
    lib.opus_decoder_destroy.argtypes = [c_void_p]
    lib.opus_decode.restype = c_int
    lib.opus_decode.argtypes = [c_void_p, c_char_p, ctypes.c_int32, c_void_p, c_int, c_int]
    lib.opus_packet_get_nb_samples.restype = c_int
    lib.opus_packet_get_nb_samples.argtypes = [c_char_p, ctypes.c_int32, ctypes.c_int32]
    if hasattr(lib, "opus_packet_has_lbrr"):
        lib.opus_packet_has_lbrr.restype = c_int
        lib.opus_packet_has_lbrr.argtypes = [c_char_p, ctypes.c_int32]


def _check(code: int, what: str) -> int:
    if code < 0:
        message: bytes = library().opus_strerror(code)
        raise OpusError(f"{what}: {message.decode()}")
    return code


def packet_samples(payload: bytes) -> int:
    """The samples (at 48 kHz) an Opus packet holds; OpusError if it is not one."""
    return _check(
        library().opus_packet_get_nb_samples(payload, len(payload), SAMPLE_RATE), "packet"
    )


def has_fec(payload: bytes) -> bool:
    """Whether the packet carries in-band FEC for the one before it (True when
    the library cannot tell: decoding then shows it)."""
    lib = library()
    if not hasattr(lib, "opus_packet_has_lbrr"):
        return True
    return bool(lib.opus_packet_has_lbrr(payload, len(payload)) > 0)


class OpusEncoder:
    """Mono Opus for voice, 20 ms a packet, with in-band FEC.

    ``expected_loss`` (0..1) tells the encoder how much of its stream the far
    end loses (from RTCP receiver reports): the more, the more of each packet
    goes to the redundant copy of the previous frame.
    """

    def __init__(
        self,
        bitrate: int = 32_000,
        fec: bool = True,
        expected_loss: float = 0.1,
        max_bandwidth: str = "fullband",
    ) -> None:
        lib = library()
        error = ctypes.c_int(0)
        handle = lib.opus_encoder_create(SAMPLE_RATE, 1, _APPLICATION_VOIP, ctypes.byref(error))
        _check(error.value, "opus_encoder_create")
        if not handle:
            raise OpusError("opus_encoder_create returned nothing")
        self._lib = lib
        self._handle: int | None = handle
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)
        self._loss_perc = -1
        self.bitrate = bitrate
        self._ctl(_SET_SIGNAL, _SIGNAL_VOICE)
        self._ctl(_SET_DTX, 0)
        self._ctl(_SET_INBAND_FEC, 1 if fec else 0)
        self._ctl(_SET_BITRATE, bitrate)
        self._ctl(_SET_MAX_BANDWIDTH, BANDWIDTHS[max_bandwidth])
        self.set_expected_loss(expected_loss)
        # Read back: a control call that did not take (see the module
        # docstring) must not go unnoticed.
        if self._get(_GET_BITRATE) != bitrate or self._get(_GET_INBAND_FEC) != (1 if fec else 0):
            self.close()
            raise OpusError("libopus did not take the encoder settings (varargs calls)")

    def _ctl(self, request: int, value: int) -> None:
        assert self._handle is not None
        _check(
            self._lib.opus_encoder_ctl(
                ctypes.c_void_p(self._handle), ctypes.c_int(request), ctypes.c_int(value)
            ),
            f"opus_encoder_ctl({request})",
        )

    def _get(self, request: int) -> int:
        assert self._handle is not None
        value = ctypes.c_int(-1)
        _check(
            self._lib.opus_encoder_ctl(
                ctypes.c_void_p(self._handle), ctypes.c_int(request), ctypes.byref(value)
            ),
            f"opus_encoder_ctl({request})",
        )
        return value.value

    @property
    def expected_loss(self) -> float:
        return self._loss_perc / 100

    def set_expected_loss(self, fraction: float) -> None:
        perc = max(0, min(100, round(fraction * 100)))
        if perc != self._loss_perc:
            self._ctl(_SET_PACKET_LOSS_PERC, perc)
            self._loss_perc = perc

    def encode(self, pcm: np.ndarray) -> bytes:
        """One 20 ms frame (960 int16 samples) -> one Opus packet."""
        if self._handle is None:
            raise OpusError("the encoder is closed")
        frame = np.ascontiguousarray(pcm, dtype=DTYPE)
        if frame.size != FRAME_SAMPLES:
            raise ValueError(f"expected {FRAME_SAMPLES} samples, got {frame.size}")
        size = _check(
            self._lib.opus_encode(
                self._handle, frame.ctypes.data, FRAME_SAMPLES, self._out, MAX_PACKET_BYTES
            ),
            "opus_encode",
        )
        return self._out.raw[:size]

    def reset(self) -> None:
        if self._handle is not None:
            self._lib.opus_encoder_ctl(ctypes.c_void_p(self._handle), ctypes.c_int(_RESET_STATE))

    def close(self) -> None:
        if self._handle is not None:
            self._lib.opus_encoder_destroy(self._handle)
            self._handle = None

    def __del__(self) -> None:
        self.close()


class OpusDecoder:
    """Mono 48 kHz decoding of any Opus stream (a stereo one is mixed down
    by libopus), with concealment and FEC recovery."""

    def __init__(self) -> None:
        lib = library()
        error = ctypes.c_int(0)
        handle = lib.opus_decoder_create(SAMPLE_RATE, 1, ctypes.byref(error))
        _check(error.value, "opus_decoder_create")
        if not handle:
            raise OpusError("opus_decoder_create returned nothing")
        self._lib = lib
        self._handle: int | None = handle
        self._pcm = np.zeros(MAX_PACKET_SAMPLES, dtype=DTYPE)

    def _decode(self, payload: bytes | None, samples: int, fec: bool) -> np.ndarray:
        if self._handle is None:
            raise OpusError("the decoder is closed")
        samples = max(1, min(samples, MAX_PACKET_SAMPLES))
        n = _check(
            self._lib.opus_decode(
                self._handle,
                payload,
                len(payload) if payload else 0,
                self._pcm.ctypes.data,
                samples,
                1 if fec else 0,
            ),
            "opus_decode",
        )
        return self._pcm[:n].copy()

    def decode(self, payload: bytes) -> np.ndarray:
        """A packet's audio (OpusError for a corrupt packet)."""
        return self._decode(payload, MAX_PACKET_SAMPLES, fec=False)

    def conceal(self, samples: int = FRAME_SAMPLES) -> np.ndarray:
        """``samples`` of libopus's packet-loss concealment (a multiple of 2.5 ms)."""
        return self._decode(None, samples, fec=False)

    def recover(self, next_payload: bytes, samples: int = FRAME_SAMPLES) -> np.ndarray:
        """The lost ``samples`` before ``next_payload``, from that packet's
        in-band FEC (concealment when it carries none)."""
        return self._decode(next_payload, samples, fec=True)

    def reset(self) -> None:
        if self._handle is not None:
            self._lib.opus_decoder_ctl(ctypes.c_void_p(self._handle), ctypes.c_int(_RESET_STATE))

    def close(self) -> None:
        if self._handle is not None:
            self._lib.opus_decoder_destroy(self._handle)
            self._handle = None

    def __del__(self) -> None:
        self.close()
