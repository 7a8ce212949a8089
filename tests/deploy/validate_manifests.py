#!/usr/bin/python3
"""Validates deploy/kubernetes and deploy/kserve against the official schemas kept in deploy/schemas.

    validate_manifests.py --schemas DIR --manifests DIR [--cli MOE_MNIST] [--self-test]

Each YAML document is checked against its kind's schema (Kubernetes' OpenAPI definitions, KServe's CRD
openAPIV3Schema) strictly: an unknown field is an error, as with `kubectl apply --validate=strict`.
Then what the schemas cannot see: the probes ask /v2/health/ready and /v2/health/live on a declared port,
the Service, HPA and PodDisruptionBudget select the Deployment's pods, the shutdown fits the grace period,
and every `serve` option in the containers' args is one the binary has (--cli).
--self-test also checks that broken copies of the manifests are rejected (so the validator can fail).
Exit 0 when all is valid; 1 with one line per problem otherwise.
"""
import argparse, copy, json, os, re, subprocess, sys

import jsonschema
import yaml


def strict(node, k8s_int_or_string=False):
    """The schema with additionalProperties: false wherever properties are listed and unknown fields are not
    explicitly preserved, and Kubernetes' int-or-string format as a type."""
    if isinstance(node, list):
        return [strict(v, k8s_int_or_string) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v, k8s_int_or_string) for k, v in node.items()}
    if k8s_int_or_string and out.get("format") == "int-or-string":
        out.pop("format")
        out["type"] = ["integer", "string"]
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


class Schemas:
    def __init__(self, directory):
        k8s = json.load(open(os.path.join(directory, "kubernetes-1.36-definitions.json")))
        kserve = json.load(open(os.path.join(directory, "kserve-crds.json")))
        self.k8s_defs = {n: strict(d, True) for n, d in k8s["definitions"].items()}
        self.validators = {}
        for kind, name in k8s["kinds"].items():
            schema = {"$ref": "#/definitions/" + name, "definitions": self.k8s_defs}
            self.validators[(k8s["apiVersions"][kind], kind)] = jsonschema.Draft4Validator(schema)
        # A CRD's schema leaves metadata open: check it against Kubernetes' ObjectMeta.
        for kind, versions in kserve["kinds"].items():
            for api_version, schema in versions.items():
                s = strict(schema)
                s["properties"]["metadata"] = {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
                s["definitions"] = self.k8s_defs
                self.validators[(api_version, kind)] = jsonschema.Draft7Validator(s)

    def errors(self, doc, where):
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key not in self.validators:
            known = ", ".join(f"{a} {k}" for a, k in sorted(self.validators))
            return [f"{where}: apiVersion/kind {key[0]} {key[1]} has no schema here (known: {known})"]
        out = []
        for e in sorted(self.validators[key].iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
            path = ".".join(str(p) for p in e.absolute_path) or "(top)"
            out.append(f"{where}: {path}: {e.message[:300]}")
        return out


def load(directory):
    docs = []
    for name in sorted(os.listdir(directory)):
        if name.endswith((".yaml", ".yml")):
            path = os.path.join(directory, name)
            for i, d in enumerate(yaml.safe_load_all(open(path))):
                if d is not None:
                    docs.append((f"{os.path.relpath(path)}#{i}", d))
    return docs


def containers(doc):
    spec = doc.get("spec", {})
    if doc.get("kind") == "Deployment":
        return spec.get("template", {}).get("spec", {}).get("containers", [])
    if doc.get("kind") == "ServingRuntime":
        return spec.get("containers", [])
    return []


def serve_options(cli):
    text = subprocess.run([cli, "serve", "--help"], check=True, capture_output=True, text=True).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", text))


def semantic(docs, cli):
    out = []
    by_kind = {}
    for where, d in docs:
        by_kind.setdefault(d.get("kind"), []).append((where, d))
    known = serve_options(cli) if cli else None
    for where, d in docs:
        for c in containers(d):
            args = c.get("args", [])
            if "serve" not in args:
                out.append(f"{where}: container {c.get('name')}: args do not run `moe-mnist serve`")
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
            for probe, path in (("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live")):
                get = c.get(probe, {}).get("httpGet", {})
                if get.get("path") != path:
                    out.append(f"{where}: container {c.get('name')}: {probe} asks {get.get('path')!r}, expected {path!r}")
                port = get.get("port")
                if port not in ports and port not in ports.values():
                    out.append(f"{where}: container {c.get('name')}: {probe} port {port!r} is not a declared container port")
            if "--port" in args and args.index("--port") + 1 < len(args):
                if int(args[args.index("--port") + 1]) not in ports.values():
                    out.append(f"{where}: container {c.get('name')}: --port {args[args.index('--port') + 1]} is not a declared container port")
            if known is not None:
                for a in args:
                    if a.startswith("--") and a not in known:
                        out.append(f"{where}: container {c.get('name')}: `moe-mnist serve` has no option {a}")
            if d.get("kind") == "Deployment":
                grace = d["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
                drain = float(args[args.index("--drain-s") + 1]) if "--drain-s" in args else 0
                inflight = float(args[args.index("--grace-s") + 1]) if "--grace-s" in args else 10
                if drain + inflight > grace:
                    out.append(f"{where}: --drain-s {drain:g} + --grace-s {inflight:g} exceed terminationGracePeriodSeconds {grace}")
                if drain == 0:
                    out.append(f"{where}: no --drain-s: a rollout would cut requests still routed to a stopping pod")
    for dwhere, dep in by_kind.get("Deployment", []):
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        name = dep["metadata"]["name"]
        def selects(sel):
            return bool(sel) and all(labels.get(k) == v for k, v in sel.items())
        for where, s in by_kind.get("Service", []):
            if not selects(s["spec"].get("selector")):
                out.append(f"{where}: the Service's selector does not select {dwhere}'s pods")
            pod_ports = {p.get("name") for c in containers(dep) for p in c.get("ports", [])}
            for p in s["spec"].get("ports", []):
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in pod_ports:
                    out.append(f"{where}: targetPort {p['targetPort']!r} is no port of {dwhere}")
        for where, p in by_kind.get("PodDisruptionBudget", []):
            if not selects(p["spec"].get("selector", {}).get("matchLabels")):
                out.append(f"{where}: the PodDisruptionBudget's selector does not select {dwhere}'s pods")
        for where, h in by_kind.get("HorizontalPodAutoscaler", []):
            t = h["spec"]["scaleTargetRef"]
            if (t.get("kind"), t.get("name")) != ("Deployment", name):
                out.append(f"{where}: scaleTargetRef {t.get('kind')}/{t.get('name')} is not Deployment/{name}")
    runtimes = {d["metadata"]["name"]: d for _, d in by_kind.get("ServingRuntime", [])}
    for where, isvc in by_kind.get("InferenceService", []):
        model = isvc["spec"]["predictor"].get("model", {})
        rt = runtimes.get(model.get("runtime"))
        if rt is None:
            out.append(f"{where}: runtime {model.get('runtime')!r} is not one of the ServingRuntimes here ({', '.join(map(str, runtimes))})")
        elif model.get("modelFormat", {}).get("name") not in {f["name"] for f in rt["spec"].get("supportedModelFormats", [])}:
            out.append(f"{where}: modelFormat {model.get('modelFormat')} is not supported by runtime {rt['metadata']['name']}")
    return out


def check(schemas, docs, cli):
    problems = []
    for where, d in docs:
        problems += schemas.errors(d, where)
    return problems + semantic(docs, cli)


def self_test(schemas, docs, cli):
    """Broken copies must be rejected: an unknown field, a wrong type, a wrong probe path, a selector miss."""
    def first(kind):
        return next(i for i, (_, d) in enumerate(docs) if d.get("kind") == kind)
    breakers = [
        ("unknown container field", "Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePulPolicy="Always")),
        ("replicas as text", "Deployment", lambda d: d["spec"].update(replicas="two")),
        ("readiness on /healthz", "Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"].update(path="/healthz")),
        ("Service selects nothing", "Service", lambda d: d["spec"].update(selector={"app": "other"})),
        ("HPA without maxReplicas", "HorizontalPodAutoscaler", lambda d: d["spec"].pop("maxReplicas")),
        ("PDB field misspelt", "PodDisruptionBudget", lambda d: d["spec"].update(minAvailble=1)),
        ("ServingRuntime unknown field", "ServingRuntime", lambda d: d["spec"].update(protocolVersion=["v2"])),
        ("InferenceService wrong type", "InferenceService", lambda d: d["spec"]["predictor"].update(minReplicas="2")),
        ("InferenceService on a missing runtime", "InferenceService", lambda d: d["spec"]["predictor"]["model"].update(runtime="nope")),
        ("metadata name as a number", "ServingRuntime", lambda d: d["metadata"].update(name=7)),
    ]
    if cli:
        breakers.append(("an option serve lacks", "Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0]["args"].append("--drain-seconds")))
    failed = []
    for what, kind, breaker in breakers:
        broken = copy.deepcopy(docs)
        breaker(broken[first(kind)][1])
        if not check(schemas, broken, cli):
            failed.append(f"self-test: a manifest with '{what}' was accepted")
    return failed, len(breakers)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schemas", required=True)
    ap.add_argument("--manifests", required=True, action="append", help="a folder of YAML manifests (repeatable)")
    ap.add_argument("--cli", help="moe-mnist binary: check the containers' serve options against its --help")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    schemas = Schemas(a.schemas)
    docs = [doc for m in a.manifests for doc in load(m)]
    if not docs:
        sys.exit("validate_manifests: no YAML documents in " + ", ".join(a.manifests))
    problems = check(schemas, docs, a.cli)
    for p in problems:
        print(p)
    if not problems:
        print(f"{len(docs)} manifests valid: " + ", ".join(f"{d['kind']} {d['metadata']['name']}" for _, d in docs))
    if a.self_test:
        failed, n = self_test(schemas, docs, a.cli)
        for f in failed:
            print(f)
        if not failed:
            print(f"self-test: all {n} broken variants rejected")
        problems += failed
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
