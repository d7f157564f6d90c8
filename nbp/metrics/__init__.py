"""Video metrics: the I3D detector, its loader, FVD protocols and the FVD metric."""

from nbp.metrics.detector import Detector, load_detector, load_detector_file
from nbp.metrics.fvd import FrechetVideoDistance
from nbp.metrics.i3d import InceptionI3d
from nbp.metrics.protocols import PRESETS, FVDProtocol, get_protocol

__all__ = [
    "Detector",
    "FVDProtocol",
    "FrechetVideoDistance",
    "InceptionI3d",
    "PRESETS",
    "get_protocol",
    "load_detector",
    "load_detector_file",
]
