# `cmake --install <build> --prefix P` lays out a relocatable tree that runs with no environment variables:
#   P/bin/moe-mnist                       RUNPATH $ORIGIN/../lib/moe-mnist
#   P/lib/moe-mnist/libonnxruntime.so.1   the ONNX Runtime moe-mnist was linked against (its SONAME)
#   P/lib/moe-mnist/libmoe_mnist_ops.so   the fused operator for other ONNX Runtime users (moe-mnist has it built in)
#   P/share/man/man1/moe-mnist.1          generated from --help by help2man (Debian's help2man)
#   P/share/doc/moe-mnist/                deployment notes
# The page is compiled into the binary; models and data are named on the command line.
set(MOE_MNIST_LIBDIR "lib/moe-mnist" CACHE STRING "Where the private libraries go, relative to the prefix")
option(MOE_MNIST_INSTALL_ORT_PROVIDERS "Also install ONNX Runtime's provider libraries (CUDA/TensorRT: large)" OFF)

file(RELATIVE_PATH moe_bin_to_lib "/prefix/bin" "/prefix/${MOE_MNIST_LIBDIR}")
set_target_properties(moe-mnist PROPERTIES INSTALL_RPATH "$ORIGIN/${moe_bin_to_lib}")
install(TARGETS moe-mnist RUNTIME DESTINATION bin)

if(MOE_MNIST_WITH_ORT)
  install(TARGETS moe_mnist_ops LIBRARY DESTINATION ${MOE_MNIST_LIBDIR})
  # Installed under its SONAME (the name the binary's DT_NEEDED asks for); the setup archive's file may be a link.
  get_filename_component(moe_ort_real "${MOE_MNIST_ORT_LIBRARY}" REALPATH)
  install(FILES "${moe_ort_real}" DESTINATION ${MOE_MNIST_LIBDIR} RENAME libonnxruntime.so.1)
  if(MOE_MNIST_INSTALL_ORT_PROVIDERS)
    file(GLOB moe_ort_providers "${MOE_MNIST_ORT_DIR}/lib/libonnxruntime_providers_*.so")
    install(FILES ${moe_ort_providers} DESTINATION ${MOE_MNIST_LIBDIR})
  endif()
endif()

# The man page: `moe-mnist --help` and every subcommand's --help, through help2man.
find_program(MOE_MNIST_HELP2MAN help2man)
if(MOE_MNIST_HELP2MAN AND NOT MOE_MNIST_SANITIZE)  # a sanitizer build runs no binary at build time
  set(moe_man "${PROJECT_BINARY_DIR}/man/moe-mnist.1")
  add_custom_command(OUTPUT ${moe_man}
    COMMAND ${PROJECT_SOURCE_DIR}/scripts/man-page.sh $<TARGET_FILE:moe-mnist> ${moe_man}
    DEPENDS moe-mnist ${PROJECT_SOURCE_DIR}/scripts/man-page.sh
    COMMENT "Generating the man page with help2man")
  add_custom_target(man_page ALL DEPENDS ${moe_man})
  install(FILES ${moe_man} DESTINATION share/man/man1)
else()
  message(STATUS "no man page (help2man not found, apt install help2man; or a sanitizer build)")
endif()
install(FILES ${PROJECT_SOURCE_DIR}/docs/deployment.md DESTINATION share/doc/moe-mnist)
