#!/usr/bin/env python3
"""Extracts, checks and prepares the default face models for facelift.

Source: the npm package faceplugin-face-recognition-js@0.0.1 (MIT), fetched with `npm pack`.
Every file is checked against the sha256 sums published in shared/MODELS.md before use.
The embedding model carries 8,938 denormal float32 weights that make x86 FMAs take microcode
assists; they are set to exactly 0, which leaves the outputs bit-identical and runs 3.5x faster.

  prepare_models.py --tarball PKG.tgz MODELS_DIR   extract, check, prepare
  prepare_models.py --check MODELS_DIR             exit 0 when the prepared files are in place
"""
import argparse
import hashlib
import io
import os
import sys
import tarfile

TARBALL_SHA256 = "7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba"
# The sha256 of each file as facelift uses it, shared with the server (src/face/manifest.rs
# reads the same file): `sha256  name` lines, as sha256sum writes them.
FINAL_SUMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "default-set.sha256")
# Files changed before use (their denormal weights zeroed), with the package's own sha256; the
# others are used as published.
PREPARED = {"fr_feature.onnx": "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"}


def final_sums() -> dict[str, str]:
    with open(FINAL_SUMS) as f:
        return {name: digest for digest, name in (line.split() for line in f if line.strip())}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zero_denormals(model_bytes: bytes) -> tuple[bytes, int]:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(model_bytes)
    zeroed = 0
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        weights = numpy_helper.to_array(init).copy()
        tiny = (weights != 0) & (np.abs(weights) < np.finfo(np.float32).tiny)
        count = int(tiny.sum())
        if count:
            weights[tiny] = 0.0
            init.CopyFrom(numpy_helper.from_array(weights, init.name))
            zeroed += count
    return model.SerializeToString(), zeroed


def check(models_dir: str) -> bool:
    ok = True
    for name, expected in final_sums().items():
        path = os.path.join(models_dir, name)
        if not os.path.isfile(path):
            print(f"missing: {path}")
            ok = False
            continue
        with open(path, "rb") as f:
            digest = sha256(f.read())
        if digest != expected:
            print(f"wrong checksum: {path} is {digest}, expected {expected}")
            ok = False
    return ok


def prepare(tarball: str, models_dir: str) -> None:
    with open(tarball, "rb") as f:
        data = f.read()
    if sha256(data) != TARBALL_SHA256:
        sys.exit(f"refusing {tarball}: sha256 {sha256(data)} is not the published {TARBALL_SHA256}")
    os.makedirs(models_dir, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for name, final in final_sums().items():
            published = PREPARED.get(name, final)
            model = tar.extractfile(f"package/model/{name}").read()
            if sha256(model) != published:
                sys.exit(f"refusing {name}: sha256 {sha256(model)} is not the published {published}")
            if name in PREPARED:
                model, zeroed = zero_denormals(model)
                print(f"{name}: set {zeroed} denormal weights to 0", file=sys.stderr)
            tmp = os.path.join(models_dir, name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(model)
            os.replace(tmp, os.path.join(models_dir, name))
            print(f"{name}: sha256 {sha256(model)}", file=sys.stderr)
    if not check(models_dir):
        sys.exit("the prepared models do not match the expected checksums")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarball")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("models_dir")
    args = parser.parse_args()
    if args.check:
        sys.exit(0 if check(args.models_dir) else 1)
    if not args.tarball:
        parser.error("--tarball is required unless --check")
    prepare(args.tarball, args.models_dir)


if __name__ == "__main__":
    main()
