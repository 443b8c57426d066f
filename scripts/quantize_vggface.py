"""Quantize the converted VGG-Face model to int8, calibrated on real face crops, and write it only
when it agrees with the fp32 model on crops the calibration did not see.

usage: quantize-vggface [PHOTOS_OR_FOLDERS ...] [--model models/vgg-face.onnx]
                        [--out models/vgg-face-int8.onnx] [--min-agreement 0.999]
                        [--check INPUT.npy ...] [--format auto|u8s8|u8u8|u8s8-reduce-range]

1. `facelift model-inputs` writes the model's input for the best face of every photo (default:
   the enrolled photos): our detector, alignment and DeepFace's resize-and-pad, exactly as the
   engine feeds VGG-Face.
2. Two crops in three (and their mirror images) calibrate a static int8 model (ONNX Runtime's
   QDQ format, per-channel weights). The last layer (fc8) stays float. The format comes from
   this CPU (`facelift cpu`): with VNNI, uint8 activations and int8 weights (u8s8, 2.7x faster
   than fp32 here); without VNNI, where ONNX Runtime's u8s8 kernels saturate, uint8 weights too
   (u8u8, exact there; on a VNNI CPU it would be slower than fp32).
3. Every third crop is held out, with any `--check` inputs, and run through both models on this
   CPU. The int8 file is written only when the smallest cosine between the two models' fc8 and
   fc7 outputs is at least `--min-agreement`; otherwise nothing is written and the exit status
   is 3 (other refusals, such as too few faces, exit with 1).

A JSON report sits beside the model (`vgg-face-int8.json`): the format, the CPU it was checked on
(`validated_on`: model name, features, int8 kernels), the agreement, the number of crops, and the
sha256 of the fp32 model it was made from. The engine refuses a u8s8 model checked with VNNI on
a CPU without it. Re-run this after converting other weights, or on another kind of CPU.
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
    exit_status = 1


class FallsShort(Refused):
    """The int8 model does not agree with fp32 well enough on this CPU: a speed-up this CPU
    cannot have, not a fault (exit status 3)."""

    exit_status = 3


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


# The int8 formats, as ONNX Runtime's QDQ quantizer names their types. On x86 without VNNI,
# ONNX Runtime's u8s8 kernels multiply pairs of uint8 x int8 products into int16 with
# VPMADDUBSW, which saturates (its quantization documentation says so and names the remedies:
# reduce_range, or U8U8). With VNNI (AVX512-VNNI or AVX-VNNI) the products are summed in int32 and
# nothing saturates. U8U8 widens to int16 before multiplying and never saturates on any CPU.
FORMATS = {
    "u8s8": {"activation": "QUInt8", "weight": "QInt8", "reduce_range": False,
             "describe": "QDQ, uint8 activations, int8 per-channel weights"},
    "u8s8-reduce-range": {"activation": "QUInt8", "weight": "QInt8", "reduce_range": True,
                          "describe": "QDQ, uint8 activations, 7-bit int8 per-channel weights"},
    "u8u8": {"activation": "QUInt8", "weight": "QUInt8", "reduce_range": False,
             "describe": "QDQ, uint8 activations, uint8 per-channel weights"},
}


def quantize(fp32_path, out_path, calibration_inputs, int8_format="u8s8"):
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    spec = FORMATS[int8_format]

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
                    activation_type=getattr(QuantType, spec["activation"]),
                    weight_type=getattr(QuantType, spec["weight"]),
                    per_channel=True, reduce_range=spec["reduce_range"],
                    use_external_data_format=True, nodes_to_exclude=list(KEEP_FLOAT))


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


def this_cpu(facelift):
    """`facelift cpu --json`: the CPU's int8 features as ONNX Runtime sees them (CPUID), its int8
    kernels and the format recommended for them."""
    result = subprocess.run([facelift, "cpu", "--json"], capture_output=True, text=True)
    if result.returncode != 0:
        raise Refused(f"facelift cpu failed:\n{result.stderr.strip()}")
    return json.loads(result.stdout)


def run(args):
    if not os.path.isfile(args.model):
        raise Refused(f"no {args.model}: convert DeepFace's weights first (scripts/convert-vggface)")
    if not os.access(args.facelift, os.X_OK):
        raise Refused(f"no facelift binary at {args.facelift}: run scripts/setup (or cargo build --release)")
    check_layer_names(args.model)
    cpu = this_cpu(args.facelift)
    int8_format = cpu["int8_format"] if args.format == "auto" else args.format
    print(f"this CPU: {cpu['cpu']} ({' '.join(cpu['features']) or 'no int8 features'}), "
          f"int8 kernels {cpu['int8_kernels']}: format {int8_format}"
          + ("" if args.format == "auto" else " (as asked)"), flush=True)
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
        quantize(args.model, staged, [load(p) for p in calibration], int8_format)
        worst = agreement(args.model, staged, checks)
        summary = ", ".join(f"{name} {value:.5f}" for name, value in worst.items())
        if min(worst.values()) < args.min_agreement:
            raise FallsShort(f"the int8 model ({int8_format}) agrees with fp32 only to cosine {summary} "
                          f"on this CPU (bar {args.min_agreement}); nothing written, keep precision fp32")
        data_name = os.path.basename(args.out) + ".data"
        report = {
            "made_from": os.path.basename(args.model),
            "made_from_sha256": sha256_of([args.model, args.model + ".data"]),
            "calibration_crops": len(calibration),
            "held_out_crops": len(held_out),
            "extra_checks": len(args.check),
            "min_cosine_vs_fp32": worst,
            "min_agreement_bar": args.min_agreement,
            "int8_format": int8_format,
            "format": FORMATS[int8_format]["describe"],
            "validated_on": {"cpu": cpu["cpu"], "features": cpu["features"],
                             "int8_kernels": cpu["int8_kernels"]},
        }
        # the old report goes first and the new one comes last: the engine refuses an int8
        # model without its report, so a run stopped halfway never leaves a report describing
        # other weights. The data file comes before the model file, so that a model file never
        # points at missing or old weights
        report_path = os.path.splitext(args.out)[0] + ".json"
        if os.path.exists(report_path):
            os.remove(report_path)
        for made, final in ((os.path.join(work, data_name), os.path.join(out_dir, data_name)), (staged, args.out)):
            os.chmod(made, 0o644)  # readable by the server's user, as the fp32 files are
            os.replace(made, final)
        with open(report_path, "w") as f:
            json.dump(report, f, indent=2)
    print(f"wrote {args.out} ({int8_format}; agreement with fp32 on held-out crops: {summary})")


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
    parser.add_argument("--format", choices=["auto", *FORMATS], default="auto",
                        help="int8 format (default: the one `facelift cpu` recommends here)")
    args = parser.parse_args()
    if args.out is None:
        args.out = os.path.join(os.path.dirname(os.path.abspath(args.model)), "vgg-face-int8.onnx")
    # the real file: onnx refuses external data reached through a symbolic link
    args.model = os.path.realpath(args.model)
    try:
        run(args)
    except Refused as e:
        print(f"quantize-vggface: {e}", file=sys.stderr)
        return e.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
