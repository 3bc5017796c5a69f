# Run by ctest: the version dkms.conf gives (which CMakeLists.txt reads as
# the project's) is the one debian/changelog's newest entry and the man
# pages carry.
cmake_minimum_required(VERSION 3.20)

file(STRINGS ${SOURCE_DIR}/dkms.conf line REGEX "^PACKAGE_VERSION=")
string(REGEX REPLACE "^PACKAGE_VERSION=\"(.*)\"$" "\\1" version "${line}")
if(NOT version STREQUAL PROJECT_VERSION)
  message(FATAL_ERROR "dkms.conf says ${version}, the CMake project ${PROJECT_VERSION}")
endif()

file(STRINGS ${SOURCE_DIR}/debian/changelog first LIMIT_COUNT 1)
if(NOT first MATCHES "^dontunmap \\(([^)-]+)(-[^)]+)?\\) ")
  message(FATAL_ERROR "debian/changelog: cannot read the version of '${first}'")
endif()
if(NOT CMAKE_MATCH_1 STREQUAL version)
  message(FATAL_ERROR "debian/changelog's newest entry is ${CMAKE_MATCH_1}, dkms.conf ${version}")
endif()

file(GLOB pages RELATIVE ${SOURCE_DIR} ${SOURCE_DIR}/man/*.[0-9])
foreach(page IN LISTS pages)
  file(STRINGS ${SOURCE_DIR}/${page} th REGEX "^\\.TH ")
  if(NOT th MATCHES "\"dontunmap ${version}\"")
    message(FATAL_ERROR "${page}: '${th}' does not name dontunmap ${version}")
  endif()
endforeach()
