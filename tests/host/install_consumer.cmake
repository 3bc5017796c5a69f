# Run by ctest: install the build tree into WORK_DIR/prefix, then build and
# run consumers against that prefix alone: a CMake project through
# find_package(dontunmap) (shared and static), and a C program compiled with
# the flags `pkg-config --cflags --libs dontunmap` gives.
cmake_minimum_required(VERSION 3.20)
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f include/linux/dontunmap.h include/dontunmap/dontunmap.hpp include/dontunmap/dontunmap.h
          ${LIBDIR}/libdontunmap.so.0 ${LIBDIR}/libdontunmap.a
          ${LIBDIR}/pkgconfig/dontunmap.pc ${LIBDIR}/cmake/dontunmap/dontunmapConfig.cmake)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

run(${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK_DIR}/build
  -DCMAKE_PREFIX_PATH=${prefix}
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
run(${WORK_DIR}/build/consumer-c)
run(${WORK_DIR}/build/consumer-static)

# pkg-config, seeing only this prefix's dontunmap.pc.
find_program(PKG_CONFIG NAMES pkg-config pkgconf)
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "pkg-config not found (apt-get install pkgconf)")
endif()
set(ENV{PKG_CONFIG_LIBDIR} ${prefix}/${LIBDIR}/pkgconfig)
unset(ENV{PKG_CONFIG_PATH})
execute_process(COMMAND ${PKG_CONFIG} --variable=prefix dontunmap
  OUTPUT_VARIABLE pc_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT pc_prefix STREQUAL prefix)
  message(FATAL_ERROR "dontunmap.pc has prefix '${pc_prefix}', installed into '${prefix}'")
endif()
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs dontunmap
  OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs dontunmap failed")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
set(program ${WORK_DIR}/consumer-pkg-config)
run(${C_COMPILER} -std=c11 -Wall -Wextra -Werror ${CONSUMER_DIR}/main.c ${flags} -o ${program})
execute_process(COMMAND ${OBJDUMP} -p ${program} OUTPUT_VARIABLE dyn)
if(NOT dyn MATCHES "NEEDED +libdontunmap\\.so\\.0")
  message(FATAL_ERROR "${program} does not load libdontunmap.so.0")
endif()
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${prefix}/${LIBDIR} ${program})
