#!/usr/bin/env python3
"""`moe-mnist serve --model-repository` on what `moe-mnist export --triton-repo` writes (issue #22).

1. Exports three models with two versions each into one repository: `mnist` (two checkpoints, fp32),
   `mnist-int8` (dynamic and static int8), `fashion` (a Fashion-MNIST checkpoint trained here, dense
   and gather routings).
2. Serves it (--model-control-mode poll); every route answers per model and version, and each
   version's answers over the whole test split give the same number of correct images as
   `moe-mnist eval` on the same file.
3. Under load from several client threads (single images, binary tensors): a version 3 of `mnist`
   is copied in and takes the latest's traffic, version 1 is removed and unloaded, a truncated
   version 4 is copied in and stays UNAVAILABLE. No request fails; every answer equals the answer of
   the version that the response names.
4. Restarted with --model-control-mode explicit: load and unload through the API under load, a
   broken model's load refused with its reason, the same checks. SIGTERM: exit 0.

usage: test_repository_cli.py --cli build/bin/moe-mnist --checkpoint DIR --mnist DATA --fashion DATA [--seconds 10]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

FAILURES = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)
    return ok


def read_idx_images(folder, n=None):
    path = os.path.join(folder, "t10k-images-idx3-ubyte")
    if not os.path.exists(path):
        import gzip
        data = gzip.open(path + ".gz").read()
    else:
        data = open(path, "rb").read()
    count = struct.unpack(">I", data[4:8])[0] if n is None else n
    return [data[16 + 784 * i:16 + 784 * (i + 1)] for i in range(count)]


def read_idx_labels(folder):
    path = os.path.join(folder, "t10k-labels-idx1-ubyte")
    data = open(path, "rb").read() if os.path.exists(path) else __import__("gzip").open(path + ".gz").read()
    return list(data[8:])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, cli, args):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([cli, "serve", "--port", str(self.port), "--grpc-port", "0"] + args,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                if request(self.url + "/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.log.seek(0)
        sys.exit("serve did not start:\n" + self.log.read().decode(errors="replace"))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        return rc, text


def request(url, body=None, headers=None, timeout=30):
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def infer(url, model, version, pixels, n):
    """Binary FP32 request of n images (bytes 0..255 each); returns (status, version, logits [n][C] or error)."""
    floats = struct.pack("<%df" % (784 * n), *[b / 255.0 for b in pixels])
    head = json.dumps({"inputs": [{"name": "input", "shape": [n, 1, 28, 28], "datatype": "FP32",
                                   "parameters": {"binary_data_size": len(floats)}}],
                       "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    path = "/v2/models/%s%s/infer" % (model, "/versions/%s" % version if version else "")
    status, body, headers = request(url + path, head + floats,
                                    {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"})
    if status != 200:
        return status, None, body.decode(errors="replace")
    hl = int(headers["Inference-Header-Content-Length"])
    meta = json.loads(body[:hl])
    values = struct.unpack("<%df" % ((len(body) - hl) // 4), body[hl:])
    classes = len(values) // n
    return status, meta["model_version"], [values[i * classes:(i + 1) * classes] for i in range(n)]


def index(url):
    status, body, _ = request(url + "/v2/repository/index", b"{}", {"Content-Type": "application/json"})
    return json.loads(body) if status == 200 else []


def state(url, model, version):
    for e in index(url):
        if e["name"] == model and e.get("version", "") == version:
            return e.get("state", ""), e.get("reason", "")
    return "", ""


def eventually(pred, seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def run(cli, *args):
    subprocess.run([cli] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def export(cli, checkpoint, repo, name, version, *extra):
    run(cli, "export", "--checkpoint", checkpoint, "--triton-repo", repo, "--name", name, "--version", str(version),
        "--version-policy", "all", *extra)


def copy_in(src_version_dir, model_dir, version):
    """A version folder appears whole: copied beside, then renamed in (as a deployment does)."""
    staged = os.path.join(model_dir, ".staging-%s" % version)
    shutil.copytree(src_version_dir, staged)
    os.rename(staged, os.path.join(model_dir, str(version)))


def correct_count(url, model, version, images, labels):
    correct = 0
    for start in range(0, len(images), 64):  # eval's batches: the same images run together
        batch = images[start:start + 64]
        status, _, logits = infer(url, model, version, b"".join(batch), len(batch))
        if status != 200:
            check(False, "%s v%s: infer answered %d: %s" % (model, version, status, logits))
            return -1
        correct += sum(1 for i, row in enumerate(logits) if max(range(len(row)), key=row.__getitem__) == labels[start + i])
    return correct


def near(a, b):
    return len(a) == len(b) and all(abs(x - y) <= 1e-4 for x, y in zip(a, b))


class Load:
    """Client threads sending single images; each answer is kept with the version that gave it."""

    def __init__(self, url, targets, images):
        self.url, self.targets, self.images = url, targets, images
        self.stop = False
        self.failed, self.answers, self.lock = [], [], threading.Lock()
        self.threads = [threading.Thread(target=self.client, args=(t,)) for t in range(len(targets))]
        for t in self.threads:
            t.start()

    def client(self, t):
        model, version = self.targets[t]
        i = t
        while not self.stop:
            k = i % len(self.images)
            status, answered_by, logits = infer(self.url, model, version, self.images[k], 1)
            with self.lock:
                if status != 200:
                    self.failed.append("%s v%s: %d %s" % (model, version, status, logits))
                else:
                    self.answers.append((model, answered_by, k, logits[0]))
            i += len(self.targets)

    def count(self, model=None, version=None):
        with self.lock:
            return sum(1 for m, v, _, _ in self.answers if (model is None or m == model) and (version is None or v == version))

    def finish(self):
        self.stop = True
        for t in self.threads:
            t.join()


def reference(url, model, version, images):
    out = []
    for img in images:
        status, _, logits = infer(url, model, version, img, 1)
        out.append(logits[0] if status == 200 else None)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--checkpoint", required=True, help="a trained MNIST checkpoint")
    ap.add_argument("--mnist", required=True)
    ap.add_argument("--fashion", required=True)
    ap.add_argument("--seconds", type=float, default=10, help="how long the load runs around the swaps")
    args = ap.parse_args()
    cli = args.cli
    with tempfile.TemporaryDirectory() as tmp:
        # Two more checkpoints: a second MNIST one (so versions 1 and 2 answer differently) and Fashion-MNIST.
        mnist2, fashion = os.path.join(tmp, "mnist2"), os.path.join(tmp, "fashion")
        for out, data, dataset, seed in ((mnist2, args.mnist, "mnist", "7"), (fashion, args.fashion, "fashion-mnist", "42")):
            run(cli, "train", "--dataset", dataset, "--data", data, "--epochs", "1", "--limit", "4000", "--val", "500",
                "--seed", seed, "--out", out)
        repo, spare = os.path.join(tmp, "repo"), os.path.join(tmp, "spare")
        export(cli, args.checkpoint, repo, "mnist", 1)
        export(cli, mnist2, repo, "mnist", 2)
        export(cli, args.checkpoint, repo, "mnist-int8", 1, "--precision", "int8")
        export(cli, args.checkpoint, repo, "mnist-int8", 2, "--precision", "int8", "--int8-input", "static")
        export(cli, fashion, repo, "fashion", 1)
        export(cli, fashion, repo, "fashion", 2, "--routing", "gather")
        export(cli, args.checkpoint, spare, "mnist", 3, "--precision", "int8", "--int8-input", "static")
        models = {"mnist": args.mnist, "mnist-int8": args.mnist, "fashion": args.fashion}

        server = Server(cli, ["--model-repository", repo, "--model-control-mode", "poll", "--repository-poll-secs", "0.2"])
        url = server.url
        status, body, _ = request(url + "/v2")
        check("model_repository" in json.loads(body)["extensions"], "GET /v2 lists the model_repository extension")
        for model, data in models.items():
            images, labels = read_idx_images(data), read_idx_labels(data)
            meta = json.loads(request(url + "/v2/models/" + model)[1])
            check(meta["versions"] == ["1", "2"], "%s: versions 1 and 2 ready (%s)" % (model, meta["versions"]))
            for v in ("1", "2"):
                base = "%s/v2/models/%s/versions/%s" % (url, model, v)
                check(request(base + "/ready")[0] == 200, "%s v%s: ready" % (model, v))
                check(json.loads(request(base)[1])["name"] == model, "%s v%s: metadata" % (model, v))
                check(json.loads(request(base + "/config")[1])["max_batch_size"] == 1024, "%s v%s: config" % (model, v))
                file = os.path.join(repo, model, v, "model.onnx")
                ev = subprocess.run([cli, "eval", "--model", file, "--data", data, "--json", "--dataset",
                                     "fashion-mnist" if model == "fashion" else "mnist"], check=True, capture_output=True, text=True)
                expected = json.loads(ev.stdout)["correct"]
                got = correct_count(url, model, v, images, labels)
                check(got == expected, "%s v%s: %d of %d correct over HTTP, eval on the same file: %d" % (model, v, got, len(images), expected))
                stats = json.loads(request(base + "/stats")[1])["model_stats"]
                check(len(stats) == 1 and stats[0]["version"] == v and stats[0]["inference_count"] >= len(images),
                      "%s v%s: statistics of that version" % (model, v))
        check(len(json.loads(request(url + "/v2/models/stats")[1])["model_stats"]) == 6, "GET /v2/models/stats: 6 versions")
        metrics = request(url + "/metrics")[1].decode()
        check('moe_mnist_images_total{model="fashion",version="2"} ' in metrics, "/metrics: model and version labels")

        # Live changes under load.
        sample = read_idx_images(args.mnist, 64)
        refs = {"1": reference(url, "mnist", "1", sample), "2": reference(url, "mnist", "2", sample)}
        load = Load(url, [("mnist", None), ("mnist", None), ("mnist", "2"), ("fashion", None)], sample)
        time.sleep(args.seconds / 5)
        copy_in(os.path.join(spare, "mnist", "3"), os.path.join(repo, "mnist"), 3)
        check(eventually(lambda: state(url, "mnist", "3")[0] == "READY"), "mnist v3 copied in: READY")
        check(eventually(lambda: load.count("mnist", "3") > 20), "mnist v3 takes the latest's traffic")
        shutil.rmtree(os.path.join(repo, "mnist", "1"))
        check(eventually(lambda: state(url, "mnist", "1") == ("UNAVAILABLE", "unloaded")), "mnist v1 removed: unloaded (%s)" % (state(url, "mnist", "1"),))
        broken = os.path.join(tmp, "broken")
        os.makedirs(broken)
        with open(os.path.join(spare, "mnist", "3", "model.onnx"), "rb") as f:
            open(os.path.join(broken, "model.onnx"), "wb").write(f.read()[:2000])
        copy_in(broken, os.path.join(repo, "mnist"), 4)
        check(eventually(lambda: state(url, "mnist", "4")[0] == "UNAVAILABLE"), "mnist v4 (truncated) stays UNAVAILABLE: %s" % state(url, "mnist", "4")[1])
        before = load.count("mnist", "3")
        time.sleep(args.seconds / 5)
        check(load.count("mnist", "3") > before, "mnist v3 still the latest after the broken v4")
        load.finish()
        refs["3"] = reference(url, "mnist", "3", sample)
        fashion_ref = reference(url, "fashion", "2", sample)
        wrong = [a for a in load.answers
                 if not near(a[3], (fashion_ref if a[0] == "fashion" else refs.get(a[1], [None] * 64))[a[2]] or [])]
        check(not load.failed, "no failed request during the swaps (%d answered; failures: %s)" % (len(load.answers), load.failed[:3]))
        check(not wrong, "every answer equals its version's answer (%d wrong)" % len(wrong))
        rc, log = server.stop()
        check(rc == 0, "SIGTERM: exit 0 (got %d)" % rc)

        # Explicit control through the API.
        os.makedirs(os.path.join(repo, "broken", "1"))
        shutil.copy(os.path.join(broken, "model.onnx"), os.path.join(repo, "broken", "1", "model.onnx"))
        server = Server(cli, ["--model-repository", repo, "--model-control-mode", "explicit", "--load-model", "fashion"])
        url = server.url
        idx = index(url)
        check({e["name"] for e in idx} == {"broken", "fashion", "mnist", "mnist-int8"}, "index lists every model in the folder")
        check(request(url + "/v2/models/mnist")[0] == 404, "mnist not loaded at start in explicit mode")
        fashion_ref = reference(url, "fashion", "2", sample)
        load = Load(url, [("fashion", None), ("fashion", None)], sample)
        post = lambda path, body=b"": request(url + path, body, {"Content-Type": "application/json"})[0:2]
        check(post("/v2/repository/models/mnist/load")[0] == 200, "POST .../mnist/load: 200")
        check(infer(url, "mnist", None, sample[0], 1)[1] == "3", "mnist loaded: the latest ready version answers")
        status, body = post("/v2/repository/models/broken/load")
        check(status == 400 and b"broken" in body, "loading a broken model: 400 with the reason (%s)" % body[:160])
        check(post("/v2/repository/models/fashion/load")[0] == 200, "reloading the model under load: 200")
        check(post("/v2/repository/models/mnist/unload")[0] == 200, "POST .../mnist/unload: 200")
        check(eventually(lambda: request(url + "/v2/models/mnist/ready")[0] != 200), "mnist unloaded: not ready")
        time.sleep(args.seconds / 5)
        load.finish()
        wrong = [a for a in load.answers if not near(a[3], fashion_ref[a[2]] or [])]
        check(not load.failed and load.answers, "no failed request while models load and unload (%d answered)" % len(load.answers))
        check(not wrong, "every answer equals its version's answer (%d wrong)" % len(wrong))
        rc, log = server.stop()
        check(rc == 0, "SIGTERM: exit 0 (got %d)" % rc)
    if FAILURES:
        sys.exit("%d check(s) failed" % len(FAILURES))
    print("all checks passed")


if __name__ == "__main__":
    main()
