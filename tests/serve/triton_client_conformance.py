#!/usr/bin/python3
"""Triton's own Python clients (tritonclient.http and tritonclient.grpc) against `moe-mnist serve`.

Not in CI: it needs the public sources of github.com/triton-inference-server/client
(src/python/library), which CI does not have, plus Debian's python3-geventhttpclient, python3-gevent,
python3-rapidjson, python3-grpcio, python3-protobuf, python3-numpy and protobuf-compiler-grpc (grpc_python_plugin).
tritonclient.grpc's message modules are generated here from proto/triton/, as Triton's build does.

  /usr/bin/python3 tests/serve/triton_client_conformance.py --client-src CLIENT/src/python/library \
      --cli build-rt/bin/moe-mnist --model runs/mnist/model.fp32.onnx

Then the model repository extension against `serve --model-repository` (explicit control):
get_model_repository_index, load_model, unload_model, on both protocols.

Every call the server supports must succeed with the model's answer; unsupported calls must fail with
a clear error. Prints one line per check and exits non-zero on any failure.
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def generate_grpc_modules(lib, out):
    """tritonclient copied to `out`, with service_pb2 / model_config_pb2 made from proto/triton/."""
    shutil.copytree(os.path.join(lib, "tritonclient"), os.path.join(out, "tritonclient"))
    dest = os.path.join(out, "tritonclient", "grpc")
    proto = os.path.join(REPO, "proto", "triton")
    subprocess.run(["protoc", "-I", proto, "--python_out", dest, "--grpc_out", dest,
                    "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                    os.path.join(proto, "grpc_service.proto"), os.path.join(proto, "model_config.proto")], check=True)
    for src, name in (("grpc_service_pb2.py", "service_pb2.py"), ("grpc_service_pb2_grpc.py", "service_pb2_grpc.py")):
        os.rename(os.path.join(dest, src), os.path.join(dest, name))
    for name in ("service_pb2.py", "service_pb2_grpc.py"):
        path = os.path.join(dest, name)
        text = open(path).read()
        text = re.sub(r"^import model_config_pb2", "from tritonclient.grpc import model_config_pb2", text, flags=re.M)
        text = re.sub(r"^import grpc_service_pb2", "from tritonclient.grpc import service_pb2", text, flags=re.M)
        text = text.replace("grpc__service__pb2", "service__pb2")
        open(path, "w").write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client-src", required=True, help="triton-inference-server/client's src/python/library")
    ap.add_argument("--cli", default=os.path.join(REPO, "build-rt", "bin", "moe-mnist"))
    ap.add_argument("--model", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="triton-conformance-")
    generate_grpc_modules(a.client_src, tmp)
    sys.path.insert(0, tmp)
    import numpy as np
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    http_port, grpc_port = random.sample(range(20000, 60000), 2)
    server = subprocess.Popen([a.cli, "serve", "--model", a.model, "--port", str(http_port), "--grpc-port", str(grpc_port)],
                              stderr=subprocess.PIPE, text=True)
    failures = []

    def check(name, fn):
        try:
            fn()
            print(f"PASS {name}")
        except Exception as e:  # noqa: BLE001 - the report names what failed
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            failures.append(name)

    def refused(name, fn, words):
        def run():
            try:
                fn()
            except InferenceServerException as e:
                msg = str(e)
                assert any(w in msg for w in words), f"unclear error: {msg}"
                print(f"     ({name} -> {msg.strip()[:110]})")
                return
            raise AssertionError("accepted")
        check(name + " is refused", run)

    def connect(started):
        """Both clients, once `started(http)` holds (the server listens): up to 10 s."""
        http = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        for _ in range(100):
            try:
                if started(http):
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        return http, grpc

    try:
        http, grpc = connect(lambda h: h.is_server_live())
        rng = np.random.default_rng(0)
        x = rng.random((4, 1, 28, 28), dtype=np.float32)
        results = {}
        for proto, mod, c in (("http", httpclient, http), ("grpc", grpcclient, grpc)):
            check(f"{proto} is_server_live/ready", lambda c=c: (c.is_server_live() and c.is_server_ready()) or (_ for _ in ()).throw(AssertionError()))
            check(f"{proto} is_model_ready", lambda c=c: c.is_model_ready("moe-mnist") or (_ for _ in ()).throw(AssertionError()))
            check(f"{proto} get_server_metadata", lambda c=c: c.get_server_metadata())
            check(f"{proto} get_model_metadata", lambda c=c: c.get_model_metadata("moe-mnist"))
            check(f"{proto} get_model_config", lambda c=c: c.get_model_config("moe-mnist"))

            def infer(mod=mod, c=c, proto=proto, binary=True):
                i = mod.InferInput("input", list(x.shape), "FP32")
                if proto == "http":
                    i.set_data_from_numpy(x, binary_data=binary)
                    outs = [mod.InferRequestedOutput("logits", binary_data=binary), mod.InferRequestedOutput("gate_probs", binary_data=binary)]
                else:
                    i.set_data_from_numpy(x)
                    outs = [mod.InferRequestedOutput("logits"), mod.InferRequestedOutput("gate_probs")]
                r = c.infer("moe-mnist", [i], outputs=outs, request_id="r1")
                results[(proto, binary)] = r.as_numpy("logits")
                assert r.as_numpy("logits").shape == (4, 10) and r.as_numpy("gate_probs").shape[0] == 4
            check(f"{proto} infer", infer)
            if proto == "http":
                check("http infer JSON tensors", lambda: infer(binary=False))

            def classification(mod=mod, c=c):
                i = mod.InferInput("input", list(x.shape), "FP32")
                i.set_data_from_numpy(x)
                r = c.infer("moe-mnist", [i], outputs=[mod.InferRequestedOutput("logits", class_count=3)])
                cls = r.as_numpy("logits")
                assert cls.shape == (4, 3), cls.shape
                top = results[(proto, True)].argmax(axis=1)
                assert [int(v.decode().split(":")[1]) for v in cls[:, 0]] == top.tolist(), cls
            check(f"{proto} classification", classification)

            def async_infer(mod=mod, c=c, proto=proto):
                i = mod.InferInput("input", list(x.shape), "FP32")
                i.set_data_from_numpy(x)
                if proto == "http":
                    r = c.async_infer("moe-mnist", [i]).get_result()
                else:
                    box = []
                    c.async_infer("moe-mnist", [i], callback=lambda result, error: box.append((result, error)))
                    for _ in range(200):
                        if box:
                            break
                        time.sleep(0.01)
                    assert box and box[0][1] is None, box
                    r = box[0][0]
                assert np.array_equal(r.as_numpy("logits"), results[(proto, True)])
            check(f"{proto} async_infer", async_infer)
            check(f"{proto} get_inference_statistics", lambda c=c: c.get_inference_statistics("moe-mnist"))
            refused(f"{proto} load_model with --model", lambda c=c: c.load_model("moe-mnist"), ["extension is not served"])
            refused(f"{proto} get_model_repository_index with --model", lambda c=c: c.get_model_repository_index(), ["extension is not served"])
            refused(f"{proto} infer on an unknown model", lambda mod=mod, c=c: c.infer("nope", [mod.InferInput("input", [1, 1, 28, 28], "FP32")]), ["unknown model"])

        def compressed():
            i = httpclient.InferInput("input", list(x.shape), "FP32")
            i.set_data_from_numpy(x, binary_data=False)
            for alg in ("gzip", "deflate"):
                r = http.infer("moe-mnist", [i], request_compression_algorithm=alg, response_compression_algorithm=alg)
                assert np.array_equal(r.as_numpy("logits"), results[("http", True)])
        check("http request/response compression", compressed)
        check("http and grpc give bit-identical logits",
              lambda: np.array_equal(results[("http", True)], results[("grpc", True)]) or (_ for _ in ()).throw(AssertionError()))

        def stream():
            box = []
            grpc.start_stream(callback=lambda result, error: box.append((result, error)))
            for k in range(5):
                i = grpcclient.InferInput("input", list(x.shape), "FP32")
                i.set_data_from_numpy(x)
                grpc.async_stream_infer("moe-mnist", [i], request_id=str(k))
            for _ in range(300):
                if len(box) == 5:
                    break
                time.sleep(0.01)
            grpc.stop_stream()
            assert len(box) == 5 and all(err is None for _, err in box), box
            assert all(np.array_equal(res.as_numpy("logits"), results[("grpc", True)]) for res, _ in box)
        check("grpc streaming", stream)
    finally:
        server.terminate()
        server.wait(timeout=30)

    # The model repository extension (serve --model-repository, explicit control), as Triton's
    # clients drive it: index, load, unload, on both protocols.
    repo = os.path.join(tmp, "repo")
    for name, version in (("moe-mnist", 1), ("moe-mnist", 2), ("other", 1)):
        os.makedirs(os.path.join(repo, name, str(version)))
        shutil.copy(a.model, os.path.join(repo, name, str(version), "model.onnx"))
    os.makedirs(os.path.join(repo, "broken", "1"))
    open(os.path.join(repo, "broken", "1", "model.onnx"), "wb").write(open(a.model, "rb").read()[:1000])
    server = subprocess.Popen([a.cli, "serve", "--model-repository", repo, "--model-control-mode", "explicit", "--load-model", "moe-mnist",
                               "--port", str(http_port), "--grpc-port", str(grpc_port)], stderr=subprocess.PIPE, text=True)
    try:
        http, grpc = connect(lambda h: h.is_server_ready())
        for proto, mod, c in (("http", httpclient, http), ("grpc", grpcclient, grpc)):
            def index(c=c, proto=proto):
                idx = c.get_model_repository_index()
                entries = idx if proto == "http" else [{"name": m.name, "version": m.version, "state": m.state} for m in idx.models]
                names = {e["name"] for e in entries}
                assert names == {"broken", "moe-mnist", "other"}, entries
                assert {(e["name"], e.get("version"), e.get("state")) for e in entries if e.get("state") == "READY"} == \
                    {("moe-mnist", "2", "READY")}, entries
            check(f"{proto} get_model_repository_index", index)

            def load_infer_unload(c=c, mod=mod):
                assert not c.is_model_ready("other")
                c.load_model("other")
                assert c.is_model_ready("other") and c.is_model_ready("other", "1")
                i = mod.InferInput("input", [1, 1, 28, 28], "FP32")
                i.set_data_from_numpy(np.zeros((1, 1, 28, 28), dtype=np.float32))
                assert c.infer("other", [i]).get_response()  # answered
                c.unload_model("other")
                for _ in range(100):
                    if not c.is_model_ready("other"):
                        break
                    time.sleep(0.05)
                assert not c.is_model_ready("other")
            check(f"{proto} load_model / is_model_ready / unload_model", load_infer_unload)
            refused(f"{proto} load_model of a truncated model", lambda c=c: c.load_model("broken"), ["could be loaded", "ONNX"])
            refused(f"{proto} load_model of a model not in the repository", lambda c=c: c.load_model("nothere"), ["no model 'nothere'"])
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
