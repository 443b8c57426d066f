"""Quantize the converted VGG-Face model to int8, calibrated on real face crops, and write it only
when it agrees with the fp32 model on crops the calibration did not see.

usage: quantize-vggface [PHOTOS_OR_FOLDERS ...] [--model models/vgg-face.onnx]
                        [--out models/vgg-face-int8.onnx] [--min-agreement 0.999]
                        [--check INPUT.npy ...]

1. `facelift model-inputs` writes the model's input for the best face of every photo (default:
   the enrolled photos): our detector, alignment and DeepFace's resize-and-pad, exactly as the
   engine feeds VGG-Face.
2. Two crops in three (and their mirror images) calibrate a static int8 model (ONNX Runtime's
   QDQ format: uint8 activations, int8 per-channel weights), which runs the convolutions on the
   CPU's int8 (VNNI/AMX) kernels. The last layer (fc8) stays float.
3. Every third crop is held out, with any `--check` inputs, and run through both models. The int8
   file is written only when the smallest cosine between the two models' fc8 and fc7 outputs is
   at least `--min-agreement`; otherwise nothing is written and the exit status is 1.

A JSON report sits beside the model (`vgg-face-int8.json`): the agreement, the number of crops,
and the sha256 of the fp32 model it was made from. Re-run this after converting other weights.
"""
import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUTS = ("fc8", "fc7")
MIN_CALIBRATION = 4
MIN_HELD_OUT = 2


class Refused(Exception):
    pass


def face_inputs(facelift, models_dir, model, photos, out_dir):
    """Runs `facelift model-inputs` into out_dir, with the detector from models_dir and the fp32
    model given; the sorted .npy paths it wrote."""
    linked = os.path.join(out_dir, "models")
    os.mkdir(linked)
    for name in ("fr_detect.onnx", "fr_landmark.onnx"):
        os.symlink(os.path.abspath(os.path.join(models_dir, name)), os.path.join(linked, name))
    for suffix in ("", ".data"):
        os.symlink(os.path.abspath(model + suffix), os.path.join(linked, "vgg-face.onnx" + suffix))
    crops = os.path.join(out_dir, "crops")
    command = [facelift, "--model", "vgg-face", "--precision", "fp32", "--models-dir", linked,
               "model-inputs", "--out", crops, *photos]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise Refused(f"facelift model-inputs failed:\n{result.stderr.strip()}")
    for line in result.stdout.splitlines():
        if line.startswith("skipped "):  # photos without a usable face, and why
            print(line, flush=True)
    return sorted(glob.glob(os.path.join(crops, "*.npy")))


def split(paths):
    """(calibration, held out): every third crop is held out."""
    held_out = [p for i, p in enumerate(paths) if i % 3 == 2]
    calibration = [p for i, p in enumerate(paths) if i % 3 != 2]
    return calibration, held_out


def session(path, threads=2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def agreement(fp32_path, int8_path, inputs):
    """The smallest cosine between the two models' outputs over the inputs, per output."""
    fp32, int8 = session(fp32_path), session(int8_path)
    worst = {name: 1.0 for name in OUTPUTS}
    for x in inputs:
        reference = fp32.run(list(OUTPUTS), {"input": x})
        quantized = int8.run(list(OUTPUTS), {"input": x})
        for name, r, q in zip(OUTPUTS, reference, quantized):
            worst[name] = min(worst[name], cosine(r, q))
    return worst


# fc8, the 2622-d descriptor layer, stays float: quantizing its output costs agreement
# (0.99884 -> 0.99908 on the noise fixture with the fixed-seed weights) and no speed (44 vs 45 ms)
KEEP_FLOAT = ("fc8_conv",)


def quantize(fp32_path, out_path, calibration_inputs):
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static


    class Crops(CalibrationDataReader):
        def __init__(self):
            # each crop and its mirror image: faces arrive from either side
            self.items = iter([{"input": np.ascontiguousarray(x)} for c in calibration_inputs
                               for x in (c, c[:, :, ::-1, :])])

        def get_next(self):
            return next(self.items, None)

    # its advice to pre-process (shape inference) does not apply: every shape here is static
    logging.getLogger().setLevel(logging.ERROR)
    quantize_static(fp32_path, out_path, Crops(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, use_external_data_format=True,
                    nodes_to_exclude=list(KEEP_FLOAT))


def check_layer_names(model):
    import onnx

    names = {node.name for node in onnx.load(model, load_external_data=False).graph.node}
    if not set(KEEP_FLOAT) <= names:
        raise Refused(f"{model} has no node named {KEEP_FLOAT[0]}: convert it again with "
                      "scripts/convert-vggface")


def sha256_of(paths):
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def load(path):
    x = np.load(path)
    if x.shape != (1, 224, 224, 3) or x.dtype != np.float32:
        raise Refused(f"{path}: shape {x.shape} {x.dtype}, expected (1, 224, 224, 3) float32")
    return x


def run(args):
    if not os.path.isfile(args.model):
        raise Refused(f"no {args.model}: convert DeepFace's weights first (scripts/convert-vggface)")
    if not os.access(args.facelift, os.X_OK):
        raise Refused(f"no facelift binary at {args.facelift}: run scripts/setup (or cargo build --release)")
    check_layer_names(args.model)
    photos = args.photos or [os.path.join(ROOT, "enrolled_faces")]
    out_dir = os.path.dirname(os.path.abspath(args.out))
    with tempfile.TemporaryDirectory() as crops, tempfile.TemporaryDirectory(dir=out_dir) as work:
        paths = face_inputs(args.facelift, args.models_dir, args.model, photos, crops)
        calibration, held_out = split(paths)
        if len(calibration) < MIN_CALIBRATION or len(held_out) < MIN_HELD_OUT:
            raise Refused(f"{len(paths)} face crops; at least {MIN_CALIBRATION + MIN_HELD_OUT} are needed "
                          f"({MIN_CALIBRATION} to calibrate, {MIN_HELD_OUT} to check); add photos")
        checks = [load(p) for p in held_out] + [load(p) for p in args.check]
        print(f"{len(paths)} faces found; calibrating on {len(calibration)} face crops and their mirror images; "
              f"checking on {len(held_out)} held-out crops and {len(args.check)} more inputs", flush=True)
        staged = os.path.join(work, os.path.basename(args.out))
        quantize(args.model, staged, [load(p) for p in calibration])
        worst = agreement(args.model, staged, checks)
        summary = ", ".join(f"{name} {value:.5f}" for name, value in worst.items())
        if min(worst.values()) < args.min_agreement:
            raise Refused(f"the int8 model agrees with fp32 only to cosine {summary} "
                          f"(bar {args.min_agreement}); nothing written, keep precision fp32")
        data_name = os.path.basename(args.out) + ".data"
        report = {
            "made_from": os.path.basename(args.model),
            "made_from_sha256": sha256_of([args.model, args.model + ".data"]),
            "calibration_crops": len(calibration),
            "held_out_crops": len(held_out),
            "extra_checks": len(args.check),
            "min_cosine_vs_fp32": worst,
            "min_agreement_bar": args.min_agreement,
            "format": "QDQ, uint8 activations, int8 per-channel weights",
        }
        # the data file first, so that a model file never points at missing or old weights
        for made, final in ((os.path.join(work, data_name), os.path.join(out_dir, data_name)), (staged, args.out)):
            os.chmod(made, 0o644)  # readable by the server's user, as the fp32 files are
            os.replace(made, final)
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump(report, f, indent=2)
    print(f"wrote {args.out} (agreement with fp32 on held-out crops: {summary})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="*", help="photos or folders (default: enrolled_faces/)")
    parser.add_argument("--model", default=os.path.join(ROOT, "models/vgg-face.onnx"))
    parser.add_argument("--models-dir", default=os.path.join(ROOT, "models"),
                        help="where the face detector is (default: models/)")
    parser.add_argument("--out", default=None, help="default: vgg-face-int8.onnx beside --model")
    parser.add_argument("--min-agreement", type=float, default=0.999)
    parser.add_argument("--check", nargs="*", default=[], metavar="INPUT.npy",
                        help="more model inputs to check agreement on (never calibrated on)")
    parser.add_argument("--facelift", default=os.path.join(ROOT, "target/release/facelift"))
    args = parser.parse_args()
    if args.out is None:
        args.out = os.path.join(os.path.dirname(os.path.abspath(args.model)), "vgg-face-int8.onnx")
    # the real file: onnx refuses external data reached through a symbolic link
    args.model = os.path.realpath(args.model)
    try:
        run(args)
    except Refused as e:
        print(f"quantize-vggface: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
