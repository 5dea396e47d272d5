# Debian packages built by CPack (scripts/package.sh runs it):
#   libaico-client1     libaico_client.so.1 (runtime; Depends from
#                       dpkg-shlibdeps: CAF, Boost.JSON 1.81 runtime,
#                       protobuf, SQLite, curl, libwebsockets, ZeroMQ, ...)
#   libaico-client-dev  include/aico, the CMake package, pkg-config, the .so
#                       link; Depends libaico-client1 (= version)
#   aico-tools          aico, aico-chat, aico-stress, aico-gateway
# Runtime libraries of different Boost versions install side by side, so
# these install beside Debian's default Boost (1.74) development files.
if(NOT AICO_CLIENT_SHARED)
  return()
endif()

# cpack (and `make install`) install what is built; they must not first
# build every target of the project (the tests, the benchmarks)
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY TRUE)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME aico)
set(CPACK_PACKAGE_VENDOR "aico")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "aico maintainers <aico@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "aico chat client engine")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES OFF)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL
  ${AICO_COMPONENT_RUNTIME} ${AICO_COMPONENT_DEV} ${AICO_COMPONENT_TOOLS})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://localhost/aico")

# runtime
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libaico-client${AICO_CLIENT_SOVERSION})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION
  "aico chat client engine (shared library)
 The embeddable client engine of the aico gateway: IPC, WebSocket and HTTP
 transports with failover, durable offline queue, response cache, tokens.")
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")

# dev
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libaico-client-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(_aico_deb_version
  "${CPACK_DEBIAN_PACKAGE_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
  "libaico-client${AICO_CLIENT_SOVERSION} (= ${_aico_deb_version})")
# aico/actors.hpp needs CAF's headers; the plain facade does not
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS "libcaf-dev (>= 0.17.6), pkg-config")
set(CPACK_DEBIAN_DEV_DESCRIPTION
  "aico chat client engine (development files)
 Public headers (include/aico), CMake package aico_client and pkg-config
 file aico_client. No Boost, SQLite, curl, libwebsockets, ZeroMQ or
 protobuf headers are needed: those are private to the library.")

# tools
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME aico-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION net)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_TOOLS_DESCRIPTION
  "aico chat client tools and reference gateway
 aico (command line client), aico-chat (interactive chat), aico-stress (load
 and chaos tool) and aico-gateway (the reference gateway).")

include(CPack)
