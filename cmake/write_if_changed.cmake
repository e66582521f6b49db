# write_if_changed(FILE TEXT): writes TEXT to FILE only when it differs, so an unchanged input rebuilds nothing.
# SPDX-License-Identifier: MIT
function(write_if_changed _out _text)
  file(WRITE "${_out}.tmp" "${_text}")
  execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${_out}.tmp" "${_out}"
                  RESULT_VARIABLE _rc)
  file(REMOVE "${_out}.tmp")
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "cannot write ${_out}")
  endif()
endfunction()
