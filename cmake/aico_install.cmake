# Install rules and the exported CMake package `aico_client` (+ pkg-config
# file): a host does
#   find_package(aico_client REQUIRED)
#   target_link_libraries(app PRIVATE aico::client)
# Included from the top CMakeLists.txt after every library is defined.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# -- the one target hosts link --------------------------------------------------
add_library(aico_client INTERFACE)
target_link_libraries(aico_client INTERFACE aico_facade aico_config aico_actors)
set_target_properties(aico_client PROPERTIES EXPORT_NAME client)
add_library(aico::client ALIAS aico_client)

# Headers keep their in-tree include paths ("messages/engine.hpp",
# "src/core/backoff.hpp") under <prefix>/include/aico; <aico/client.hpp> is
# found through <prefix>/include. NOTE: this replaces the targets'
# INTERFACE_INCLUDE_DIRECTORIES (the plain source-dir paths set in their
# CMakeLists cannot be exported); add further public include dirs here, with
# $<BUILD_INTERFACE:...>/$<INSTALL_INTERFACE:...>. Every target the exported
# libraries link (also PRIVATE: static libraries export it as LINK_ONLY) must
# be in the export set below or be re-created in aico_clientConfig.cmake.in.
set(_aico_inc "${CMAKE_INSTALL_INCLUDEDIR}/aico")
foreach(_t aico_messages aico_core aico_model aico_store)
  set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES
    "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>;$<INSTALL_INTERFACE:${_aico_inc}>;$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
endforeach()
# generated ipc.pb.h is private to the IPC transport
set_target_properties(aico_proto PROPERTIES INTERFACE_INCLUDE_DIRECTORIES
  "$<BUILD_INTERFACE:${PROJECT_BINARY_DIR}>")

set(AICO_CLIENT_LIBS
  aico_facade aico_config aico_actors
  aico_transport_http aico_transport_ws aico_transport_ipc aico_proto
  aico_store aico_model aico_core)

install(TARGETS ${AICO_CLIENT_LIBS} aico_messages aico_client
  EXPORT aico_clientTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS aico aico-gateway RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# -- headers ----------------------------------------------------------------------
file(GLOB _aico_msg_hdrs "${PROJECT_SOURCE_DIR}/messages/*.hpp")
file(GLOB _aico_core_hdrs "${PROJECT_SOURCE_DIR}/src/core/*.hpp")
install(FILES ${_aico_msg_hdrs} DESTINATION ${_aico_inc}/messages)
install(FILES ${_aico_core_hdrs} DESTINATION ${_aico_inc}/src/core)
install(FILES ${PROJECT_SOURCE_DIR}/src/model/codec.hpp
  DESTINATION ${_aico_inc}/src/model)
install(FILES ${PROJECT_SOURCE_DIR}/src/config/load_config.hpp
  DESTINATION ${_aico_inc}/src/config)
# messages/transport.hpp carries the TLS options of the HTTP/WS transports
install(FILES ${PROJECT_SOURCE_DIR}/src/transport/tls_options.hpp
  DESTINATION ${_aico_inc}/src/transport)
install(FILES
  ${PROJECT_SOURCE_DIR}/include/aico/client.hpp
  ${PROJECT_SOURCE_DIR}/include/aico/facade.hpp
  DESTINATION ${_aico_inc})

# -- CMake package ---------------------------------------------------------------
set(_aico_cmake_dir "${CMAKE_INSTALL_LIBDIR}/cmake/aico_client")
install(EXPORT aico_clientTargets NAMESPACE aico::
  DESTINATION ${_aico_cmake_dir})
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/aico_clientConfig.cmake.in
  ${PROJECT_BINARY_DIR}/aico_clientConfig.cmake
  INSTALL_DESTINATION ${_aico_cmake_dir})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/aico_clientConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/aico_clientConfig.cmake
  ${PROJECT_BINARY_DIR}/aico_clientConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindCAF.cmake
  DESTINATION ${_aico_cmake_dir})

# -- pkg-config --------------------------------------------------------------------
# relocatable: the prefix is found from the .pc file's own location
file(RELATIVE_PATH AICO_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
configure_file(${PROJECT_SOURCE_DIR}/cmake/aico_client.pc.in
  ${PROJECT_BINARY_DIR}/aico_client.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/aico_client.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
