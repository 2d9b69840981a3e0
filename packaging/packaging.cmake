# Debian packages: `cpack -G DEB` in a build directory makes tillside_<v>_<arch>.deb
# (agent) and tillside-hub_<v>_<arch>.deb. docs/OPERATIONS.md, "Packages and units".
set(TS_PKG_DIR ${CMAKE_CURRENT_LIST_DIR})

# Packages are built on the release they are for. Debian 12 still puts units
# and udev rules under /lib; from Debian 13 on they live under /usr/lib (the
# /usr merge is complete there; /lib is a symlink to it on both).
set(TS_LIBPREFIX /lib)
if(EXISTS /etc/os-release)
    file(STRINGS /etc/os-release _ts_os REGEX "^(ID|VERSION_ID)=")
    if(_ts_os MATCHES "ID=debian" AND _ts_os MATCHES "VERSION_ID=\"?([0-9]+)")
        if(CMAKE_MATCH_1 GREATER_EQUAL 13)
            set(TS_LIBPREFIX /usr/lib)
        endif()
    endif()
endif()
set(TS_UNIT_DIR ${TS_LIBPREFIX}/systemd/system)
set(TS_UDEV_DIR ${TS_LIBPREFIX}/udev/rules.d)

install(FILES ${TS_PKG_DIR}/systemd/tillside.service DESTINATION ${TS_UNIT_DIR} COMPONENT tillside)
install(FILES ${TS_PKG_DIR}/systemd/tillside-hub.service DESTINATION ${TS_UNIT_DIR}
        COMPONENT tillside-hub)
install(FILES ${TS_PKG_DIR}/etc/tillside.conf DESTINATION /etc/tillside COMPONENT tillside)
install(FILES ${TS_PKG_DIR}/etc/hub.conf DESTINATION /etc/tillside-hub COMPONENT tillside-hub)

install(FILES ${TS_PKG_DIR}/udev/60-tillside-scanners.rules DESTINATION ${TS_UDEV_DIR}
        COMPONENT tillside)

# Man pages, compressed as Debian policy wants them (gzip -n: reproducible).
find_program(GZIP_EXE gzip REQUIRED)
set(TS_MAN_OUT ${CMAKE_BINARY_DIR}/man)
set(TS_MAN_GZ)
foreach(page tillside.1 tillside-hub.1 tillside.conf.5)
    add_custom_command(OUTPUT ${TS_MAN_OUT}/${page}.gz
        COMMAND ${CMAKE_COMMAND} -E make_directory ${TS_MAN_OUT}
        COMMAND ${GZIP_EXE} -9nc ${TS_PKG_DIR}/man/${page} > ${TS_MAN_OUT}/${page}.gz
        DEPENDS ${TS_PKG_DIR}/man/${page} VERBATIM)
    list(APPEND TS_MAN_GZ ${TS_MAN_OUT}/${page}.gz)
endforeach()
add_custom_target(ts_man ALL DEPENDS ${TS_MAN_GZ})
install(FILES ${TS_MAN_OUT}/tillside.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT tillside)
install(FILES ${TS_MAN_OUT}/tillside.conf.5.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man5
        COMPONENT tillside)
install(FILES ${TS_MAN_OUT}/tillside-hub.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
        COMPONENT tillside-hub)
add_custom_command(OUTPUT ${TS_MAN_OUT}/changelog.gz
    COMMAND ${GZIP_EXE} -9nc ${TS_PKG_DIR}/changelog > ${TS_MAN_OUT}/changelog.gz
    DEPENDS ${TS_PKG_DIR}/changelog VERBATIM)
add_custom_target(ts_changelog ALL DEPENDS ${TS_MAN_OUT}/changelog.gz)
foreach(pkg tillside tillside-hub)
    install(FILES ${TS_MAN_OUT}/changelog.gz DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${pkg}
            COMPONENT ${pkg})
endforeach()
install(FILES ${TS_PKG_DIR}/copyright DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/tillside COMPONENT tillside)
install(FILES ${TS_PKG_DIR}/nginx/tillside-hub.conf ${TS_PKG_DIR}/nginx/tillside-hub-stream.conf
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/tillside-hub/examples/nginx COMPONENT tillside-hub)
install(FILES ${TS_PKG_DIR}/copyright DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/tillside-hub
        COMPONENT tillside-hub)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME tillside)
set(CPACK_PACKAGE_VENDOR "tillside")
set(CPACK_PACKAGE_CONTACT "tillside maintainers <ops@tillside.invalid>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL tillside tillside-hub)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://tillside.invalid/")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_TILLSIDE_PACKAGE_NAME tillside)
set(CPACK_DEBIAN_TILLSIDE-HUB_PACKAGE_NAME tillside-hub)
set(CPACK_DEBIAN_TILLSIDE_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_TILLSIDE-HUB_PACKAGE_DEPENDS "passwd")
# First line: the synopsis; CPack indents the rest.
set(CPACK_COMPONENT_TILLSIDE_DESCRIPTION
    "store terminal agent showing customer cards at the till\nShows the customer card when a loyalty card or receipt is scanned at the till,\nfrom a local cache synced from the tillside hub.")
set(CPACK_COMPONENT_TILLSIDE-HUB_DESCRIPTION
    "central service serving customer cards to store terminals\nBuilds customer cards from CDP events and serves each store's slice to its\nterminals over mutual TLS.")
set(CPACK_STRIP_FILES ON)
foreach(comp tillside tillside-hub)
    string(TOUPPER ${comp} COMP)
    set(CPACK_DEBIAN_${COMP}_PACKAGE_CONTROL_EXTRA
        "${TS_PKG_DIR}/debian/${comp}/conffiles;${TS_PKG_DIR}/debian/${comp}/postinst;${TS_PKG_DIR}/debian/${comp}/prerm;${TS_PKG_DIR}/debian/${comp}/postrm")
endforeach()
# TS_PKG_VERSION=0.1.1 cpack ... builds the same tree as another version (the
# upgrade test); read when cpack runs, not when cmake does.
set(CPACK_PROJECT_CONFIG_FILE ${TS_PKG_DIR}/cpack_version.cmake)
include(CPack)
