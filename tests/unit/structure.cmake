# Structure checks over the built objects (tools/file_cycles.py): no circle
# of calls between the files of a directory, no private header (NAME_int.h)
# included outside its component.
foreach(dir hub agent common sync drivers)
    add_test(NAME structure_no_cycles_${dir}
        COMMAND ${PYTHON3} ${CMAKE_SOURCE_DIR}/tools/file_cycles.py ${CMAKE_BINARY_DIR} ${dir}
            --src ${CMAKE_SOURCE_DIR})
    set_tests_properties(structure_no_cycles_${dir} PROPERTIES LABELS "unit;structure" TIMEOUT 60)
endforeach()
