# Install rules, the exported CMake package `aico_client` and the pkg-config
# file. What is installed is a promise to every host, so it is small:
#   <prefix>/include/aico/*.hpp             the public headers, nothing else
#   <prefix>/lib/libaico_client.so.1...     the shared library (hidden
#                                           internals, private dependencies)
#   <prefix>/lib/cmake/aico_client/         find_package(aico_client)
#   <prefix>/lib/pkgconfig/aico_client.pc   pkg-config aico_client
#   <prefix>/bin/aico, aico-chat, aico-stress, aico-gateway   (the tools)
# A host does
#   find_package(aico_client REQUIRED)
#   target_link_libraries(app PRIVATE aico::client)    # plain C++ facade
#   target_link_libraries(app PRIVATE aico::actors)    # + CAF (actors.hpp)
# Included from the top CMakeLists.txt after every target is defined.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# components of the Debian packages (cmake/aico_package.cmake)
set(AICO_COMPONENT_RUNTIME runtime)
set(AICO_COMPONENT_DEV dev)
set(AICO_COMPONENT_TOOLS tools)

install(TARGETS aico aico-chat aico-stress aico-gateway
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT ${AICO_COMPONENT_TOOLS})

if(NOT AICO_CLIENT_SHARED)
  message(STATUS "aico_client is static (AICO_CLIENT_SHARED=OFF): the "
                 "library, headers and packages are not installed")
  return()
endif()

install(TARGETS aico_client
  EXPORT aico_clientTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    COMPONENT ${AICO_COMPONENT_RUNTIME}
    NAMELINK_COMPONENT ${AICO_COMPONENT_DEV}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# -- headers: include/aico only --------------------------------------------------
file(GLOB AICO_PUBLIC_HEADERS "${PROJECT_SOURCE_DIR}/include/aico/*.hpp")
install(FILES ${AICO_PUBLIC_HEADERS}
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/aico
  COMPONENT ${AICO_COMPONENT_DEV})

# -- CMake package ---------------------------------------------------------------
set(_aico_cmake_dir "${CMAKE_INSTALL_LIBDIR}/cmake/aico_client")
install(EXPORT aico_clientTargets NAMESPACE aico::
  DESTINATION ${_aico_cmake_dir} COMPONENT ${AICO_COMPONENT_DEV})
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/aico_clientConfig.cmake.in
  ${PROJECT_BINARY_DIR}/aico_clientConfig.cmake
  INSTALL_DESTINATION ${_aico_cmake_dir})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/aico_clientConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/aico_clientConfig.cmake
  ${PROJECT_BINARY_DIR}/aico_clientConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindCAF.cmake
  DESTINATION ${_aico_cmake_dir} COMPONENT ${AICO_COMPONENT_DEV})

# -- pkg-config --------------------------------------------------------------------
# relocatable: the prefix is found from the .pc file's own location
file(RELATIVE_PATH AICO_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
configure_file(${PROJECT_SOURCE_DIR}/cmake/aico_client.pc.in
  ${PROJECT_BINARY_DIR}/aico_client.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/aico_client.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT ${AICO_COMPONENT_DEV})
