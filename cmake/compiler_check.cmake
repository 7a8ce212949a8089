# No code from a compiler known to miscompile its target.
#
# Debian's GCC 12.2 (fixed in 12.3) miscompiles AVX-512 code: at -O2 its SLP vectoriser builds
# `std::vector<double>{0.5, 0.5, 0, 0}` as {0.5, 0.5, 0.5, 0.5} (one broadcast stored for the whole
# constant). Every file compiled with AVX-512 enabled gets -fno-tree-slp-vectorize from this compiler,
# and the reproducer (cmake/checks/init_list_constant.cpp) is compiled with the exact flags of each
# instruction-set target of the build and run here: a wrong answer stops the configure step. A target
# this CPU cannot run is reported as not run; CTest runs the same programs again (`codegen_*`).
#
# Sets MOE_MNIST_AVX2_FLAGS, MOE_MNIST_AVX512_FLAGS, MOE_MNIST_VNNI_FLAGS, MOE_MNIST_AMX_FLAGS
# (per-file options of the kernel files) and MOE_MNIST_BASE_FLAGS (every other file).

set(MOE_MNIST_AVX2_FLAGS -mavx2 -mfma)
set(MOE_MNIST_AVX512_FLAGS -mavx512f -mavx2 -mfma)
set(MOE_MNIST_VNNI_FLAGS -mavx512f -mavx512bw -mavx512vnni -mavx2 -mfma)
set(MOE_MNIST_AMX_FLAGS -mamx-tile -mamx-int8 -mavx512f -mavx2 -mfma)
set(MOE_MNIST_BASE_FLAGS)
set(moe_slp_fix)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 12.3)
  set(moe_slp_fix -fno-tree-slp-vectorize)
  list(APPEND MOE_MNIST_AVX512_FLAGS ${moe_slp_fix})
  list(APPEND MOE_MNIST_VNNI_FLAGS ${moe_slp_fix})
  list(APPEND MOE_MNIST_AMX_FLAGS ${moe_slp_fix})
endif()
if(MOE_MNIST_NATIVE)
  # -march=native may enable AVX-512 for every file: the fix then applies to every file.
  set(MOE_MNIST_BASE_FLAGS -march=native ${moe_slp_fix})
endif()

set(moe_check_src "${CMAKE_CURRENT_LIST_DIR}/checks/init_list_constant.cpp")
string(TOUPPER "${CMAKE_BUILD_TYPE}" moe_bt)
separate_arguments(moe_config_flags UNIX_COMMAND "${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_${moe_bt}}")

# moe_check_codegen(LABEL FLAGS...): compile the reproducer with the build type's flags plus FLAGS,
# at those and at -O2, run it, and fail the configure step on a wrong answer.
function(moe_check_codegen label)
  set(flags ${ARGN})
  foreach(opt "" -O2)
    set(dir "${PROJECT_BINARY_DIR}/codegen-check/${label}${opt}")
    try_run(rc compiled "${dir}" "${moe_check_src}"
            COMPILE_DEFINITIONS ${moe_config_flags} ${flags} ${opt}
            COMPILE_OUTPUT_VARIABLE compile_out RUN_OUTPUT_VARIABLE run_out)
    if(opt STREQUAL "")
      string(JOIN " " shown ${moe_config_flags} ${flags})
    endif()
    if(NOT compiled)
      message(FATAL_ERROR "codegen check '${label}': the reproducer does not compile with ${shown} ${opt}:\n${compile_out}")
    elseif(rc EQUAL 77)
      set(verdict "not run (this CPU lacks ${label})")
    elseif(rc EQUAL 0)
      set(verdict "right")
    else()
      message(FATAL_ERROR "codegen check '${label}': ${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION} with ${shown} ${opt} "
        "builds std::vector{0.5, 0.5, 0, 0} wrongly on this CPU (exit ${rc}: ${run_out}). This compiler miscompiles "
        "the target: use clang (CC=clang CXX=clang++) or GCC >= 12.3, or drop -DMOE_MNIST_NATIVE=ON.")
    endif()
  endforeach()
  message(STATUS "codegen check ${label} (${shown}, and at -O2): ${verdict}")
endfunction()

moe_check_codegen(base ${MOE_MNIST_BASE_FLAGS})
moe_check_codegen(avx2 ${MOE_MNIST_AVX2_FLAGS})
moe_check_codegen(avx512 ${MOE_MNIST_AVX512_FLAGS})
moe_check_codegen(vnni ${MOE_MNIST_VNNI_FLAGS})
moe_check_codegen(amx ${MOE_MNIST_AMX_FLAGS})
