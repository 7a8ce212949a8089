# Imports the prebuilt ONNX Runtime that scripts/setup.sh unpacks as the target onnxruntime::onnxruntime.
set(MOE_MNIST_ORT_DIR "${PROJECT_SOURCE_DIR}/third_party/onnxruntime" CACHE PATH
    "ONNX Runtime folder holding include/ and lib/ (made by scripts/setup.sh)")

find_library(MOE_MNIST_ORT_LIBRARY NAMES onnxruntime PATHS "${MOE_MNIST_ORT_DIR}/lib" NO_DEFAULT_PATH)
find_path(MOE_MNIST_ORT_INCLUDE_DIR onnxruntime_cxx_api.h PATHS "${MOE_MNIST_ORT_DIR}/include" NO_DEFAULT_PATH)

if(MOE_MNIST_ORT_LIBRARY AND MOE_MNIST_ORT_INCLUDE_DIR)
  add_library(onnxruntime::onnxruntime SHARED IMPORTED)
  set_target_properties(onnxruntime::onnxruntime PROPERTIES
    IMPORTED_LOCATION "${MOE_MNIST_ORT_LIBRARY}"
    IMPORTED_SONAME "libonnxruntime.so.1"
    INTERFACE_INCLUDE_DIRECTORIES "${MOE_MNIST_ORT_INCLUDE_DIR}")
  set(MOE_MNIST_HAVE_ORT ON)
else()
  set(MOE_MNIST_HAVE_ORT OFF)
  message(WARNING "ONNX Runtime not found in ${MOE_MNIST_ORT_DIR}: run scripts/setup.sh "
                  "(or set -DMOE_MNIST_ORT_DIR=...). The cpu/cuda/tensorrt backends are left out.")
endif()
