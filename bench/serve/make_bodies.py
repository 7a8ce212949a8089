#!/usr/bin/env python3
"""Writes the request bodies `scripts/serve-bench.sh` sends: one MNIST test image as KServe v2 JSON
(FP32), binary FP32 and binary UINT8 (Triton's binary tensor extension). Prints, per body, its file
name and the Inference-Header-Content-Length value ("" for plain JSON)."""
import json
import os
import struct
import sys

data_dir, out = sys.argv[1], sys.argv[2]
with open(os.path.join(data_dir, "t10k-images-idx3-ubyte"), "rb") as f:
    f.read(16)
    pixels = f.read(784)
floats = [p / 255.0 for p in pixels]
tensor = {"name": "input", "shape": [1, 1, 28, 28]}
outputs = [{"name": "logits", "parameters": {"binary_data": True}}, {"name": "gate_probs", "parameters": {"binary_data": True}}]


def write(name, body, header_length):
    with open(os.path.join(out, name), "wb") as f:
        f.write(body)
    print(name, header_length)


body = json.dumps({"inputs": [dict(tensor, datatype="FP32", data=floats)]}, separators=(",", ":")).encode()
write("json-fp32", body, "")
for dt, blob in (("FP32", struct.pack("<784f", *floats)), ("UINT8", bytes(pixels))):
    head = json.dumps({"inputs": [dict(tensor, datatype=dt, parameters={"binary_data_size": len(blob)})], "outputs": outputs},
                      separators=(",", ":")).encode()
    write("binary-" + dt.lower(), head + blob, str(len(head)))
