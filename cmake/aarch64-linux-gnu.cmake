# Cross compiling for arm64 guests with Debian's cross compilers
# (gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu):
#
#   cmake -S . -B build/aarch64 \
#     -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#     -DDONTUNMAP_STATIC_TESTS=ON -DDONTUNMAP_HOST_TESTS=OFF
#
# The target's headers and libraries are Debian's multiarch cross tree,
# /usr/aarch64-linux-gnu. GoogleTest is then built from /usr/src/googletest
# (package googletest), see DONTUNMAP_GTEST_SOURCE in the top CMakeLists.txt.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
