"""Speed-ups tried for VGG-Face on this CPU, each with its cosine agreement with the fp32
output on DeepFace's fixture inputs (../shared/fixtures/vggface-parity/).

usage: .deps/venv/bin/python scripts/vggface_experiments.py MODEL.onnx [--fixtures DIR]
Needs `pip install onnxruntime` in the venv (not needed by anything else). Prints one JSON line
per variant: name, median forward ms, min cosine agreement with fp32 on fc8 and fc7.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
