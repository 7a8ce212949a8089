#!/usr/bin/python3
"""Re-extracts the schema parts moe-mnist's manifests use, as committed data (run by hand, never by the tests):
    deploy/schemas/extract.py K8S_CLIENT_PYTHON_GIT_DIR KSERVE_GIT_DIR   (run inside deploy/schemas)
K8S_CLIENT_PYTHON_GIT_DIR: a clone of kubernetes-client/python, whose kubernetes/swagger.json.unprocessed is
Kubernetes' own api/openapi-spec/swagger.json of the release in its scripts/constants.py (KUBERNETES_BRANCH).
KSERVE_GIT_DIR: a clone of kserve/kserve (config/crd/full)."""
import json, subprocess, sys, yaml
K8S, KS = sys.argv[1], sys.argv[2]
def show(repo, path): return subprocess.run(["git", "-C", repo, "show", "HEAD:" + path], check=True, capture_output=True, text=True).stdout
def strip(x):
    if isinstance(x, dict): return {k: strip(v) for k, v in x.items() if k != "description"}
    if isinstance(x, list): return [strip(v) for v in x]
    return x
spec = json.loads(show(K8S, "kubernetes/swagger.json.unprocessed"))
defs = spec["definitions"]
roots = ["io.k8s.api.apps.v1.Deployment", "io.k8s.api.core.v1.Service",
         "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler", "io.k8s.api.policy.v1.PodDisruptionBudget"]
need, todo = set(), list(roots)
def refs(x):
    if isinstance(x, dict):
        for k, v in x.items():
            if k == "$ref": yield v.split("/")[-1]
            else: yield from refs(v)
    elif isinstance(x, list):
        for v in x: yield from refs(v)
while todo:
    n = todo.pop()
    if n in need: continue
    need.add(n); todo.extend(refs(defs[n]))
out = {"source": "kubernetes-client/python kubernetes/swagger.json.unprocessed (Kubernetes' api/openapi-spec/swagger.json, release-1.36), "
                  "commit 024658493d124f046fc0a9827a2a3165cf2aee28; only the definitions reachable from the kinds below, descriptions removed",
       "kinds": {d["kind"]: n for n in roots for d in defs[n]["x-kubernetes-group-version-kind"]},
       "apiVersions": {d["kind"]: (d["group"] + "/" if d["group"] else "") + d["version"] for n in roots for d in defs[n]["x-kubernetes-group-version-kind"]},
       "definitions": {n: strip(defs[n]) for n in sorted(need)}}
json.dump(out, open("kubernetes-1.36-definitions.json", "w"), indent=1, sort_keys=True)
print(len(need), "definitions")
kout = {"source": "kserve/kserve config/crd/full, commit aaac4e294dae2c7b1aa1886447793f3aa1c30912; the openAPIV3Schema of each "
                   "served version, descriptions removed", "kinds": {}}
for f in ["serving.kserve.io_servingruntimes.yaml", "serving.kserve.io_inferenceservices.yaml"]:
    crd = yaml.safe_load(show(KS, "config/crd/full/" + f))
    kind = crd["spec"]["names"]["kind"]
    for v in crd["spec"]["versions"]:
        if v.get("served"):
            kout["kinds"].setdefault(kind, {})[crd["spec"]["group"] + "/" + v["name"]] = strip(v["schema"]["openAPIV3Schema"])
json.dump(kout, open("kserve-crds.json", "w"), separators=(",", ":"), sort_keys=True)
print({k: list(v) for k, v in kout["kinds"].items()})
