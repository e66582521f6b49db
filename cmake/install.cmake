# tether's install: programs, man pages made from their --help, systemd units, hub.conf example, bash completion.
# SPDX-License-Identifier: MIT
#
# cmake --install build [--prefix DIR]. Directories follow GNUInstallDirs;
# TETHER_SYSTEMD_UNITDIR and TETHER_BASH_COMPLETIONDIR override where the
# units and the completion go (default: what pkg-config says for a /usr
# prefix, else under the prefix).
include(GNUInstallDirs)

install(TARGETS tether-hub tether-site tetherctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Man pages: help2man runs each program's --help and --version, so a page
# never says other than the program does. Without help2man: none, loudly.
find_program(HELP2MAN help2man)
set(_man_desc_tether-hub "the tether hub: site tunnels, user proxy and API")
set(_man_desc_tether-site "the tether site agent: one outbound tunnel to the hub")
set(_man_desc_tetherctl "the tether hub's command line client")
if(HELP2MAN)
  set(_pages)
  foreach(prog tether-hub tether-site tetherctl)
    set(page ${CMAKE_BINARY_DIR}/man/${prog}.1)
    add_custom_command(
      OUTPUT ${page}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
      COMMAND ${CMAKE_COMMAND} -E env TETHER_NO_TUNE=1 ${HELP2MAN} --no-info --no-discard-stderr
              --section=1 --source=tether --name=${_man_desc_${prog}} --output=${page}
              $<TARGET_FILE:${prog}>
      DEPENDS ${prog}
      COMMENT "Man page ${prog}(1) from its --help"
      VERBATIM)
    list(APPEND _pages ${page})
  endforeach()
  add_custom_target(manpages ALL DEPENDS ${_pages})
  install(FILES ${_pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(WARNING "help2man not found: no man pages (apt-get install help2man)")
endif()

# systemd units, with the installed programs' paths.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(_unitdir_default /lib/systemd/system)
  set(_complete_default ${CMAKE_INSTALL_FULL_DATADIR}/bash-completion/completions)
  pkg_get_variable(_pc_unitdir systemd systemdsystemunitdir)
  if(_pc_unitdir)
    set(_unitdir_default ${_pc_unitdir})
  endif()
else()
  # Relative: under whatever prefix `cmake --install --prefix` gives.
  set(_unitdir_default lib/systemd/system)
  set(_complete_default ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
endif()
set(TETHER_SYSTEMD_UNITDIR ${_unitdir_default} CACHE STRING
    "Where the systemd units go (relative: under the prefix)")
set(TETHER_BASH_COMPLETIONDIR ${_complete_default} CACHE STRING
    "Where bash completion goes (relative: under the prefix)")
foreach(unit tether-hub.service tether-site@.service)
  configure_file(${CMAKE_SOURCE_DIR}/deploy/systemd/${unit}.in ${CMAKE_BINARY_DIR}/systemd/${unit}
                 @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/systemd/${unit} DESTINATION ${TETHER_SYSTEMD_UNITDIR})
endforeach()

install(FILES ${CMAKE_SOURCE_DIR}/deploy/hub.conf.example DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples
        RENAME hub.conf)
foreach(prog tether-hub tether-site tetherctl)
  install(FILES ${CMAKE_SOURCE_DIR}/deploy/completion/tether.bash
          DESTINATION ${TETHER_BASH_COMPLETIONDIR} RENAME ${prog})
endforeach()
