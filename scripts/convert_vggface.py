"""Convert DeepFace's VGG-Face weights (Keras HDF5) to ONNX, without TensorFlow.

usage: convert-vggface WEIGHTS.h5 [--out models/vgg-face.onnx]

The weighted layers are taken in the order of the file's `layer_names` attribute (layer names
differ between Keras versions; DeepFace itself loads by order). The model has two outputs:
`fc8` (2622-d, the VGG-Face descriptor) and `fc7` (4096-d, after ReLU, what current DeepFace
uses). Input `input`: float32 [N, 224, 224, 3], NHWC, BGR, values / 255.

The weights go to `<out>.data` beside the model (ONNX external data), written one slice at a
time through a memory map, so converting the real 580 MB file never holds more than one layer's
slice in memory.
"""
import argparse
import os
import sys

import numpy as np

WHERE = """DeepFace's VGG-Face weights are not shipped with facelift (580 MB, licensed for
non-commercial research only). DeepFace downloads them on first use to
  ~/.deepface/weights/vgg_face_weights.h5
from
  https://github.com/serengil/deepface_models/releases/download/v1.0/vgg_face_weights.h5
Check that their licence fits your use, then run:
  scripts/convert-vggface ~/.deepface/weights/vgg_face_weights.h5"""

# (kernel h, kernel w, in, out) of the 16 weighted layers, in order: 13 3x3 convs in blocks of
# 2, 2, 3, 3, 3 (each followed by a 2x2 max-pool), fc6 (7x7), fc7 (1x1), fc8 (1x1, 2622).
BLOCKS = [2, 2, 3, 3, 3]
SHAPES = (
    [(3, 3, 3, 64), (3, 3, 64, 64)]
    + [(3, 3, 64, 128), (3, 3, 128, 128)]
    + [(3, 3, 128, 256), (3, 3, 256, 256), (3, 3, 256, 256)]
    + [(3, 3, 256, 512), (3, 3, 512, 512), (3, 3, 512, 512)]
    + [(3, 3, 512, 512)] * 3
    + [(7, 7, 512, 4096), (1, 1, 4096, 4096), (1, 1, 4096, 2622)]
)


class NotVggFace(Exception):
    pass


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def weighted_layers(h5):
    """[(layer name, kernel dataset, bias dataset)] in the file's layer order."""
    if "layer_names" not in h5.attrs:
        raise NotVggFace("no 'layer_names' attribute: not a Keras weights file")
    layers = []
    for name in map(text, h5.attrs["layer_names"]):
        group = h5[name]
        names = [text(n) for n in group.attrs.get("weight_names", [])]
        if not names:
            continue
        if len(names) != 2:
            raise NotVggFace(f"layer {name} has {len(names)} weights, expected a kernel and a bias")
        kernel, bias = (group[n] for n in names)
        layers.append((name, kernel, bias))
    return layers


def check_shapes(layers):
    found = [(name, tuple(k.shape), tuple(b.shape)) for name, k, b in layers]
    problems = []
    if len(found) != len(SHAPES):
        problems.append(f"{len(found)} weighted layers, VGG-Face has {len(SHAPES)}")
    for i, ((name, kernel, bias), expected) in enumerate(zip(found, SHAPES)):
        if kernel != expected or bias != (expected[3],):
            problems.append(f"layer {i + 1} ({name}): kernel {kernel}, bias {bias}; expected {expected}, ({expected[3]},)")
    if problems:
        raise NotVggFace("these are not VGG-Face's layer shapes:\n  " + "\n  ".join(problems))


def convert(weights, out):
    import h5py
    import onnx
    from onnx import TensorProto, helper

    data_path = out + ".data"
    data_name = os.path.basename(data_path)
    with h5py.File(weights, "r") as h5:
        layers = weighted_layers(h5)
        check_shapes(layers)
        total = sum(int(np.prod(k.shape)) + int(np.prod(b.shape)) for _, k, b in layers) * 4
        tmp_data = data_path + ".part"
        with open(tmp_data, "wb") as f:
            f.truncate(total)
        data = np.memmap(tmp_data, dtype=np.float32, mode="r+")
        initializers = []
        offset = 0  # in floats

        def external(name, dims):
            nonlocal offset
            count = int(np.prod(dims))
            t = onnx.TensorProto()
            t.name = name
            t.data_type = TensorProto.FLOAT
            t.dims.extend(dims)
            t.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", str(offset * 4)), ("length", str(count * 4))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            initializers.append(t)
            view = data[offset : offset + count]
            offset += count
            return view

        for index, (_, kernel, bias) in enumerate(layers):
            kh, kw, cin, cout = kernel.shape
            # Keras (kh, kw, in, out) to ONNX (out, in, kh, kw), one kernel row at a time
            target = external(f"w{index}", [cout, cin, kh, kw]).reshape(cout, cin, kh, kw)
            for row in range(kh):
                target[:, :, row, :] = np.asarray(kernel[row], dtype=np.float32).transpose(2, 1, 0)
            external(f"b{index}", [cout])[:] = np.asarray(bias, dtype=np.float32)
        data.flush()
        del data

    nodes = [helper.make_node("Transpose", ["input"], ["x0"], perm=[0, 3, 1, 2])]
    current, layer = "x0", 0
    for block, convs in enumerate(BLOCKS):
        for _ in range(convs):
            nodes.append(helper.make_node("Conv", [current, f"w{layer}", f"b{layer}"], [f"conv{layer}"],
                                          kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [f"conv{layer}"], [f"relu{layer}"]))
            current, layer = f"relu{layer}", layer + 1
        nodes.append(helper.make_node("MaxPool", [current], [f"pool{block}"], kernel_shape=[2, 2], strides=[2, 2]))
        current = f"pool{block}"
    nodes += [
        helper.make_node("Conv", [current, "w13", "b13"], ["fc6_conv"], kernel_shape=[7, 7]),
        helper.make_node("Relu", ["fc6_conv"], ["fc6"]),
        helper.make_node("Conv", ["fc6", "w14", "b14"], ["fc7_conv"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["fc7_conv"], ["fc7_relu"]),
        helper.make_node("Flatten", ["fc7_relu"], ["fc7"], axis=1),
        helper.make_node("Conv", ["fc7_relu", "w15", "b15"], ["fc8_conv"], kernel_shape=[1, 1]),
        helper.make_node("Flatten", ["fc8_conv"], ["fc8"], axis=1),
    ]
    for node in nodes:  # named after their output, so that tools can pick layers out
        node.name = node.output[0]
    graph = helper.make_graph(
        nodes,
        "vgg-face",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 224, 224, 3])],
        [
            helper.make_tensor_value_info("fc8", TensorProto.FLOAT, ["N", 2622]),
            helper.make_tensor_value_info("fc7", TensorProto.FLOAT, ["N", 4096]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="facelift convert-vggface")
    model.ir_version = 8  # the IR of opset 17, which every ONNX Runtime since 1.13 reads
    model.doc_string = "VGG-Face as DeepFace runs it: NHWC BGR /255 input; fc8 2622-d, fc7 4096-d"
    os.replace(tmp_data, data_path)
    with open(out, "wb") as f:
        f.write(model.SerializeToString())
    onnx.checker.check_model(out)  # by path, so that it finds the external data


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=WHERE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="?", help="DeepFace's vgg_face_weights.h5")
    parser.add_argument("--out", default="models/vgg-face.onnx")
    args = parser.parse_args()
    if not args.weights:
        print(WHERE, file=sys.stderr)
        return 2
    if not os.path.isfile(args.weights):
        print(f"convert-vggface: no file {args.weights}\n\n{WHERE}", file=sys.stderr)
        return 2
    try:
        convert(args.weights, args.out)
    except NotVggFace as e:
        print(f"convert-vggface: refusing {args.weights}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"convert-vggface: cannot read {args.weights} as HDF5: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} and {os.path.basename(args.out)}.data (outputs fc8 2622-d, fc7 4096-d)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
