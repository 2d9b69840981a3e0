# Read by cpack after CPackConfig.cmake: lets a test package the same build
# under another version number.
if(DEFINED ENV{TS_PKG_VERSION} AND NOT "$ENV{TS_PKG_VERSION}" STREQUAL "")
    set(CPACK_PACKAGE_VERSION "$ENV{TS_PKG_VERSION}")
    set(CPACK_DEBIAN_PACKAGE_VERSION "$ENV{TS_PKG_VERSION}")
endif()
