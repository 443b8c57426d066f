"""Speed-ups tried for VGG-Face on this CPU, each with its cosine agreement with the fp32
output on DeepFace's fixture inputs (../shared/fixtures/vggface-parity/).

usage: .deps/venv/bin/python scripts/vggface_experiments.py MODEL.onnx [--fixtures DIR]
                                                             [--crops DIR]
Prints one JSON line per variant: name, median forward ms, min cosine agreement with fp32 on fc8
and fc7. With --crops (a folder `facelift --model vgg-face model-inputs --out DIR PHOTOS` wrote),
also static int8 calibrated as scripts/quantize-vggface does, on two crops in three: every layer
int8, fc8 kept float (what the quantizer ships), and percentile calibration.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort


def session(path, threads, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run(sess, inputs, repeats):
    outputs = [sess.run(["fc8", "fc7"], {"input": x}) for x in inputs]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(["fc8", "fc7"], {"input": inputs[0]})
        times.append((time.perf_counter() - start) * 1e3)
    return outputs, (statistics.median(times) if times else 0.0)


def cosine(a, b):
    a, b = a.ravel(), b.ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--fixtures", default="../shared/fixtures/vggface-parity")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--crops", help="face crops (.npy) to calibrate static int8 on")
    args = parser.parse_args()
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice to pre-process
    inputs = [np.load(os.path.join(args.fixtures, f"{n}_input.npy")) for n in ("img1_skip", "img2_skip", "synthetic")]
    reference, _ = run(session(args.model, 2), inputs, 0)

    def report(name, sess):
        outputs, ms = run(sess, inputs, args.repeats)
        agreement = {
            layer: min(cosine(o[i], r[i]) for o, r in zip(outputs, reference))
            for i, layer in enumerate(("fc8", "fc7"))
        }
        print(json.dumps({"variant": name, "forward_ms": round(ms, 1), "min_cosine_vs_fp32": agreement}), flush=True)

    print(json.dumps({"onnxruntime": ort.__version__}), flush=True)
    for threads in (1, 2):
        report(f"fp32, {threads} thread(s), all optimisations", session(args.model, threads))
    for label, level in (("none", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
                         ("basic", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
                         ("extended", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)):
        report(f"fp32, 2 threads, optimisations {label}", session(args.model, 2, level))

    from onnxruntime.quantization import QuantType, quantize_dynamic
    with tempfile.TemporaryDirectory() as tmp:
        for weight_type, per_channel in ((QuantType.QUInt8, False), (QuantType.QUInt8, True), (QuantType.QInt8, True)):
            name = f"int8 dynamic ({weight_type.name} weights{', per channel' if per_channel else ''}), 2 threads"
            out = os.path.join(tmp, f"vgg-{weight_type.name}-{per_channel}.onnx")
            try:
                quantize_dynamic(args.model, out, weight_type=weight_type, per_channel=per_channel)
                report(name, session(out, 2))
            except Exception as e:  # an unsupported operator is a result too
                print(json.dumps({"variant": name, "error": str(e).splitlines()[0][:160]}), flush=True)

        # Static int8 (QDQ: uint8 activations, int8 per-channel weights), which runs the
        # convolutions on the CPU's VNNI int8 kernels. Calibrated on the mirrored fixture inputs,
        # so that agreement is measured on inputs the calibration did not see.
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

        class Mirrored(CalibrationDataReader):
            def __init__(self):
                self.items = iter([{"input": np.ascontiguousarray(x[:, :, ::-1, :])} for x in inputs])

            def get_next(self):
                return next(self.items, None)

        name = "int8 static (QDQ, uint8 activations, int8 per-channel weights), 2 threads"
        out = os.path.join(tmp, "vgg-static.onnx")
        try:
            quantize_static(args.model, out, Mirrored(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True, use_external_data_format=True)
            report(name, session(out, 2))
        except Exception as e:
            print(json.dumps({"variant": name, "error": str(e).splitlines()[0][:160]}), flush=True)

        if args.crops:
            crops_experiments(args.model, args.crops, tmp, report)

        # bf16 and fp16: every weight and activation in the narrow type (the CPU has AVX-512
        # BF16/FP16 and AMX), with casts at the input and outputs.
        for label, elem in (("bf16", onnx.TensorProto.BFLOAT16), ("fp16", onnx.TensorProto.FLOAT16)):
            name = f"{label} throughout, 2 threads"
            out = os.path.join(tmp, f"vgg-{label}.onnx")
            try:
                narrow(args.model, out, elem)
                report(name, session(out, 2))
            except Exception as e:
                print(json.dumps({"variant": name, "error": str(e).splitlines()[0][:160]}), flush=True)


def crops_experiments(model, crops, tmp, report):
    """Static int8 calibrated on face crops, the way scripts/quantize-vggface calibrates."""
    import glob

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    from quantize_vggface import KEEP_FLOAT, split

    if not {n.name for n in onnx.load(model, load_external_data=False).graph.node} >= set(KEEP_FLOAT):
        print(json.dumps({"error": "unnamed nodes: convert the model again"}), flush=True)
        return
    calibration, _ = split(sorted(glob.glob(os.path.join(crops, "*.npy"))))
    faces = [np.load(p) for p in calibration]

    class Crops(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": np.ascontiguousarray(x)} for c in faces for x in (c, c[:, :, ::-1, :])])

        def get_next(self):
            return next(self.items, None)

    variants = [
        ("every layer", {}),
        ("fc8 kept float", {"nodes_to_exclude": list(KEEP_FLOAT)}),
        ("fc8 kept float, percentile 99.999", {"nodes_to_exclude": list(KEEP_FLOAT),
                                               "calibrate_method": CalibrationMethod.Percentile,
                                               "extra_options": {"CalibPercentile": 99.999}}),
    ]
    for label, options in variants:
        name = f"int8 static (QDQ), calibrated on {len(faces)} face crops and mirrors, {label}, 2 threads"
        out = os.path.join(tmp, "vgg-crops.onnx")
        try:
            quantize_static(model, out, Crops(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True, use_external_data_format=True, **options)
            report(name, session(out, 2))
        except Exception as e:
            print(json.dumps({"variant": name, "error": str(e).splitlines()[0][:160]}), flush=True)
        for leftover in glob.glob(out + "*"):
            os.remove(leftover)


def narrow(source, out, elem):
    """Rewrites the fp32 model with `elem` weights and activations; fp32 input and outputs."""
    from onnx import helper, numpy_helper

    model = onnx.load(source)
    graph = model.graph
    for init in graph.initializer:
        values = numpy_helper.to_array(init).astype(np.float32)
        if elem == onnx.TensorProto.FLOAT16:
            narrowed = numpy_helper.from_array(values.astype(np.float16), init.name)
        else:  # bfloat16: the upper half of each float32, rounded to nearest even
            bits = values.view(np.uint32)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
            narrowed = helper.make_tensor(init.name, elem, values.shape, rounded.tobytes(), raw=True)
        init.CopyFrom(narrowed)
    first = graph.input[0].name
    for node in graph.node:
        node.input[:] = [f"{first}_narrow" if name == first else name for name in node.input]
    cast_in = helper.make_node("Cast", [first], [f"{first}_narrow"], to=elem)
    casts_out = []
    for output in graph.output:
        wide = output.name
        for node in graph.node:
            node.output[:] = [f"{wide}_narrow" if name == wide else name for name in node.output]
        casts_out.append(helper.make_node("Cast", [f"{wide}_narrow"], [wide], to=onnx.TensorProto.FLOAT))
    nodes = [cast_in, *graph.node, *casts_out]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    onnx.save(model, out, save_as_external_data=True, location=os.path.basename(out) + ".data")


if __name__ == "__main__":
    main()
