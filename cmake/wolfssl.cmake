# wolfSSL for tether: a static library built from Debian's source package with
# AES-NI and SP P-256 (deploy/build-wolfssl.sh), once per build directory and
# set of configure flags, reused after.
# Falls back to the system libwolfssl, loudly, when that build is impossible.
# SPDX-License-Identifier: MIT
#
# Inputs:  TETHER_WOLFSSL_PREFIX  an already-built install prefix to use as is
#          TETHER_WOLFSSL_DIR     where to build it (default <build>/wolfssl);
#                                 several build dirs may share one.
# Outputs: target tether::wolfssl, TETHER_WOLFSSL_BUILD (compile definition:
#          "source-aesni VERSION", "source VERSION" or "system VERSION"),
#          TETHER_WOLFSSL_IN_USE (internal cache entry, for scripts).

set(TETHER_WOLFSSL_DIR "${CMAKE_BINARY_DIR}/wolfssl" CACHE PATH "wolfSSL build and install dir")

if(NOT TETHER_WOLFSSL_PREFIX)
  set(_prefix "${TETHER_WOLFSSL_DIR}/install")
  # A failed attempt is not repeated on every automatic re-configure of this
  # build dir (each costs up to a minute); it is retried when the script
  # changes, or after: cmake -UTETHER_WOLFSSL_FAILED <build>.
  file(MD5 "${CMAKE_SOURCE_DIR}/deploy/build-wolfssl.sh" _script_md5)
  if(TETHER_WOLFSSL_FAILED STREQUAL _script_md5)
    if(EXISTS "${_prefix}/lib/libwolfssl.a")
      message(WARNING "wolfSSL rebuild with this script's flags failed before "
                      "(${TETHER_WOLFSSL_DIR}/build.log); using the older build in ${_prefix}. "
                      "To retry: cmake -UTETHER_WOLFSSL_FAILED ${CMAKE_BINARY_DIR}")
    else()
      message(WARNING "wolfSSL source build failed before (${TETHER_WOLFSSL_DIR}/build.log); "
                      "not retrying. To retry: cmake -UTETHER_WOLFSSL_FAILED ${CMAKE_BINARY_DIR}")
    endif()
  else()
    # Run every time: the script returns at once when the build there has its
    # STAMP (recipe and configure flags), and rebuilds one made with other
    # flags (a build dir kept from before a flag change).
    if(NOT EXISTS "${_prefix}/lib/libwolfssl.a")
      message(STATUS "Building wolfSSL from Debian's source package into ${TETHER_WOLFSSL_DIR}")
    endif()
    execute_process(
      COMMAND bash ${CMAKE_SOURCE_DIR}/deploy/build-wolfssl.sh "${TETHER_WOLFSSL_DIR}"
      RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      set(TETHER_WOLFSSL_FAILED "${_script_md5}" CACHE INTERNAL "build-wolfssl.sh that failed")
      if(EXISTS "${_prefix}/lib/libwolfssl.a")
        message(WARNING "wolfSSL rebuild failed (${_rc}); using the older build in ${_prefix}")
      else()
        message(WARNING "wolfSSL source build failed (${_rc}); falling back to system libwolfssl")
      endif()
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
  # "source-aesni" only when the library really has AES-NI: the build script
  # drops it on CPUs without it, and a hand-made prefix may lack it.
  file(STRINGS "${TETHER_WOLFSSL_PREFIX}/include/wolfssl/options.h" _aesni
       REGEX "^#define WOLFSSL_AESNI")
  if(_aesni)
    set(_flavor "source-aesni")
  else()
    set(_flavor "source")
    message(WARNING "wolfSSL in ${TETHER_WOLFSSL_PREFIX} has no AES-NI: TLS will be slow")
  endif()
  # Single-precision P-256 (the build script's --enable-sp --enable-sp-asm):
  # without it each TLS handshake costs the hub several times the CPU.
  file(STRINGS "${TETHER_WOLFSSL_PREFIX}/include/wolfssl/options.h" _sp
       REGEX "^#define WOLFSSL_HAVE_SP_ECC")
  if(NOT _sp)
    message(WARNING "wolfSSL in ${TETHER_WOLFSSL_PREFIX} has no single-precision P-256 "
                    "(--enable-sp): TLS handshakes will cost several times the CPU")
  endif()
  add_library(tether::wolfssl STATIC IMPORTED GLOBAL)
  set_target_properties(tether::wolfssl PROPERTIES
    IMPORTED_LOCATION "${TETHER_WOLFSSL_PREFIX}/lib/libwolfssl.a"
    INTERFACE_INCLUDE_DIRECTORIES "${TETHER_WOLFSSL_PREFIX}/include"
    INTERFACE_LINK_LIBRARIES "m;pthread")
  set(TETHER_WOLFSSL_BUILD "${_flavor} ${_ver}")
  set(_where "${TETHER_WOLFSSL_PREFIX}")
else()
  pkg_check_modules(SYSWOLFSSL IMPORTED_TARGET wolfssl)
  if(NOT SYSWOLFSSL_FOUND)
    message(FATAL_ERROR "No wolfSSL: the source build failed (see ${TETHER_WOLFSSL_DIR}/build.log) "
                        "and the system has no libwolfssl-dev (run deploy/setup.sh)")
  endif()
  add_library(tether::wolfssl INTERFACE IMPORTED GLOBAL)
  set_target_properties(tether::wolfssl PROPERTIES INTERFACE_LINK_LIBRARIES PkgConfig::SYSWOLFSSL)
  set(TETHER_WOLFSSL_BUILD "system ${SYSWOLFSSL_VERSION}")
  set(_where "${SYSWOLFSSL_LINK_LIBRARIES}")
  message(WARNING "\n*** Using the SYSTEM wolfSSL ${SYSWOLFSSL_VERSION} (no AES-NI): TLS will be "
                  "~30x slower. See ${TETHER_WOLFSSL_DIR}/build.log and re-run cmake. ***\n")
endif()
set_property(TARGET tether::wolfssl APPEND PROPERTY
  INTERFACE_COMPILE_DEFINITIONS "TETHER_WOLFSSL_BUILD=\"${TETHER_WOLFSSL_BUILD}\"")
# Cached so scripts (deploy/test.sh) can read it from CMakeCache.txt.
set(TETHER_WOLFSSL_IN_USE "${TETHER_WOLFSSL_BUILD} (${_where})" CACHE INTERNAL
    "wolfSSL build in use")
message(STATUS "wolfSSL in use: ${TETHER_WOLFSSL_BUILD}")
