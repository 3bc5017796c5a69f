# Run by ctest: dkms.conf's BUILD_EXCLUSIVE_KERNEL names exactly the kernel
# series module/compat.h builds for (its "!DONTUNMAP_KV(a, b)" list before
# the "#error ... has not been verified"), and matches the releases of
# those series as Debian and the debug rows spell them, and nothing else.
cmake_minimum_required(VERSION 3.20)

file(READ ${COMPAT_H} compat)
string(FIND "${compat}" "has not been verified" at)
if(at LESS 0)
  message(FATAL_ERROR "${COMPAT_H}: no \"has not been verified\" #error")
endif()
string(SUBSTRING "${compat}" 0 ${at} head)
string(REGEX MATCHALL "!DONTUNMAP_KV\\(([0-9]+), ([0-9]+)\\)" kvs "${head}")
set(series)
foreach(kv ${kvs})
  string(REGEX REPLACE "!DONTUNMAP_KV\\(([0-9]+), ([0-9]+)\\)" "\\1\\\\.\\2" s "${kv}")
  list(APPEND series "${s}")
endforeach()
if(NOT series)
  message(FATAL_ERROR "${COMPAT_H}: no DONTUNMAP_KV series found")
endif()
list(JOIN series "|" alternatives)
set(expected "^(${alternatives})\\.")

file(STRINGS ${DKMS_CONF} lines REGEX "^BUILD_EXCLUSIVE_KERNEL=")
list(LENGTH lines n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "${DKMS_CONF}: ${n} BUILD_EXCLUSIVE_KERNEL lines, expected one")
endif()
string(REGEX REPLACE "^BUILD_EXCLUSIVE_KERNEL=\"(.*)\"$" "\\1" regex "${lines}")
if(NOT regex STREQUAL expected)
  message(FATAL_ERROR "${DKMS_CONF}: BUILD_EXCLUSIVE_KERNEL is '${regex}'; "
    "module/compat.h verifies '${expected}'")
endif()

foreach(release 5.10.0-46-amd64 6.1.0-57-amd64 6.1.0-50-amd64 6.1.0-57-arm64
        6.12.118+deb13-amd64 6.12.95+deb12-amd64 7.3.4+deb13-amd64 7.3.4+deb13-arm64
        6.1.192-dontunmap-debug 7.3.4-dontunmap-debug)
  if(NOT release MATCHES "${regex}")
    message(FATAL_ERROR "BUILD_EXCLUSIVE_KERNEL '${regex}' skips ${release}")
  endif()
endforeach()
foreach(release 4.19.0-27-amd64 5.1.0 5.100.1 6.10.0-1-amd64 6.11.2 6.120.1 7.30.1 17.3.0
        6.1)
  if(release MATCHES "${regex}")
    message(FATAL_ERROR "BUILD_EXCLUSIVE_KERNEL '${regex}' lets ${release} build")
  endif()
endforeach()
