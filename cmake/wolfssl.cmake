# wolfSSL for tether: a static library built from Debian's source package with
# AES-NI (deploy/build-wolfssl.sh), once per build directory, reused after.
# Falls back to the system libwolfssl, loudly, when that build is impossible.
# SPDX-License-Identifier: MIT
#
# Inputs:  TETHER_WOLFSSL_PREFIX  an already-built install prefix to use as is
#          TETHER_WOLFSSL_DIR     where to build it (default <build>/wolfssl);
#                                 several build dirs may share one.
# Outputs: target tether::wolfssl, TETHER_WOLFSSL_BUILD (compile definition).

set(TETHER_WOLFSSL_DIR "${CMAKE_BINARY_DIR}/wolfssl" CACHE PATH "wolfSSL build and install dir")

if(NOT TETHER_WOLFSSL_PREFIX)
  set(_prefix "${TETHER_WOLFSSL_DIR}/install")
  if(NOT EXISTS "${_prefix}/lib/libwolfssl.a")
    message(STATUS "Building wolfSSL from Debian's source package into ${TETHER_WOLFSSL_DIR}")
    execute_process(
      COMMAND bash ${CMAKE_SOURCE_DIR}/deploy/build-wolfssl.sh "${TETHER_WOLFSSL_DIR}"
      RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(WARNING "wolfSSL source build failed (${_rc}); falling back to system libwolfssl")
    endif()
  endif()
  if(EXISTS "${_prefix}/lib/libwolfssl.a")
    set(TETHER_WOLFSSL_PREFIX "${_prefix}")
  endif()
endif()

if(TETHER_WOLFSSL_PREFIX)
  set(_ver "unknown")
  if(EXISTS "${TETHER_WOLFSSL_PREFIX}/VERSION")
    file(STRINGS "${TETHER_WOLFSSL_PREFIX}/VERSION" _ver LIMIT_COUNT 1)
  else()
    file(STRINGS "${TETHER_WOLFSSL_PREFIX}/include/wolfssl/version.h" _vl
         REGEX "#define LIBWOLFSSL_VERSION_STRING")
    string(REGEX REPLACE ".*\"(.*)\".*" "\\1" _ver "${_vl}")
  endif()
  add_library(tether::wolfssl STATIC IMPORTED GLOBAL)
  set_target_properties(tether::wolfssl PROPERTIES
    IMPORTED_LOCATION "${TETHER_WOLFSSL_PREFIX}/lib/libwolfssl.a"
    INTERFACE_INCLUDE_DIRECTORIES "${TETHER_WOLFSSL_PREFIX}/include"
    INTERFACE_LINK_LIBRARIES "m;pthread")
  set(TETHER_WOLFSSL_BUILD "source-aesni ${_ver}")
else()
  pkg_check_modules(SYSWOLFSSL REQUIRED IMPORTED_TARGET wolfssl)
  add_library(tether::wolfssl INTERFACE IMPORTED GLOBAL)
  set_target_properties(tether::wolfssl PROPERTIES INTERFACE_LINK_LIBRARIES PkgConfig::SYSWOLFSSL)
  set(TETHER_WOLFSSL_BUILD "system ${SYSWOLFSSL_VERSION}")
  message(WARNING "Using the system wolfSSL (no AES-NI): TLS will be slow")
endif()
set_property(TARGET tether::wolfssl APPEND PROPERTY
  INTERFACE_COMPILE_DEFINITIONS "TETHER_WOLFSSL_BUILD=\"${TETHER_WOLFSSL_BUILD}\"")
message(STATUS "wolfSSL in use: ${TETHER_WOLFSSL_BUILD}")
