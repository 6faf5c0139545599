# Driven by ctest (see CMakeLists.txt). Every failure is FATAL_ERROR with the step's output.

function(run what)
  cmake_parse_arguments(R "" "WORKING_DIRECTORY;OUTPUT" "COMMAND" ${ARGN})
  execute_process(COMMAND ${R_COMMAND}
    WORKING_DIRECTORY ${WORK_DIR}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sdk_package: ${what} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "sdk_package: ${what}: ok")
  if(R_OUTPUT)
    set(${R_OUTPUT} "${out}" PARENT_SCOPE)
  endif()
endfunction()

# A mount left by an interrupted run would make the removal below walk into it.
find_program(FUSERMOUNT NAMES fusermount3 fusermount)
if(FUSERMOUNT AND EXISTS ${WORK_DIR}/mnt)
  execute_process(COMMAND ${FUSERMOUNT} -u -z ${WORK_DIR}/mnt OUTPUT_QUIET ERROR_QUIET)
endif()
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(PREFIX ${WORK_DIR}/prefix)
set(EXAMPLE_BUILD ${WORK_DIR}/plugin-hello)

run("install into ${PREFIX}" COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX})
foreach(installed include/hfvfs/layer.h include/hfvfs/plugin.h include/hfvfs/version.h
    include/hfvfs/local/local_layer.h lib/cmake/hfvfs/hfvfsConfig.cmake
    share/hfvfs/conformance/conformance.h lib/hfvfs/plugins/libhfvfs-local.so)
  if(NOT EXISTS ${PREFIX}/${installed})
    message(FATAL_ERROR "sdk_package: the install lacks ${installed}")
  endif()
endforeach()

# The same compiler and build type as the kernel: the plugin's build tag must match.
run("configure examples/plugin-hello with find_package(hfvfs)"
  COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/plugin-hello -B ${EXAMPLE_BUILD}
    -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${PREFIX} -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
    -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER})
run("build examples/plugin-hello" COMMAND ${CMAKE_COMMAND} --build ${EXAMPLE_BUILD} -j2)
set(PLUGIN ${EXAMPLE_BUILD}/libhfvfs-uppercase.so)
if(NOT EXISTS ${PLUGIN})
  message(FATAL_ERROR "sdk_package: the build made no ${PLUGIN}")
endif()
run("the example's own tests (conformance over local -> uppercase)"
  COMMAND ${CMAKE_CTEST_COMMAND} --test-dir ${EXAMPLE_BUILD} --output-on-failure)

set(DATA ${WORK_DIR}/data)
file(WRITE ${DATA}/greeting.txt "Hello from a third-party plugin\n")
file(WRITE ${DATA}/keep.md "not changed\n")
run("load with the kernel's PluginLoader" COMMAND ${PROBE} ${PLUGIN} ${DATA} OUTPUT probed)
if(NOT probed MATCHES "plugin uppercase 1.0.0 \\(wrapper\\)"
    OR NOT probed MATCHES "greeting.txt: HELLO FROM A THIRD-PARTY PLUGIN")
  message(FATAL_ERROR "sdk_package: unexpected probe output:\n${probed}")
endif()

set(HFVFS ${PREFIX}/bin/hfvfs)
if(NOT EXISTS ${HFVFS})
  message(STATUS "sdk_package: no hfvfs binary in the install (the kernel target is absent); "
    "checked through the PluginLoader only")
  return()
endif()

set(ENV{HFVFS_HOME} ${WORK_DIR}/home)
set(ENV{HFVFS_PLUGIN_PATH} ${EXAMPLE_BUILD})
run("hfvfs plugins" COMMAND ${HFVFS} plugins OUTPUT listed)
foreach(type uppercase local)
  if(NOT listed MATCHES "${type}")
    message(FATAL_ERROR "sdk_package: `hfvfs plugins` does not list ${type}:\n${listed}")
  endif()
endforeach()

set(MOUNT ${WORK_DIR}/mnt)
file(MAKE_DIRECTORY ${MOUNT})
file(WRITE ${WORK_DIR}/spec.toml "mountpoint = \"${MOUNT}\"

[[layer]]
type = \"local\"
path = \"${DATA}\"

[[layer]]
type = \"uppercase\"
only_suffix = \".txt\"
")
run("hfvfs check" COMMAND ${HFVFS} check ${WORK_DIR}/spec.toml)

if(NOT EXISTS /dev/fuse)
  message(STATUS "sdk_package: no /dev/fuse; not mounting")
  return()
endif()
run("hfvfs mount" COMMAND ${HFVFS} mount ${WORK_DIR}/spec.toml)
# Read with cat rather than file(READ), which would end the script with the mount still up.
execute_process(COMMAND cat ${MOUNT}/greeting.txt OUTPUT_VARIABLE through_mount ERROR_VARIABLE e1)
execute_process(COMMAND cat ${MOUNT}/keep.md OUTPUT_VARIABLE kept ERROR_VARIABLE e2)
run("hfvfs stop" COMMAND ${HFVFS} stop ${MOUNT})
if(NOT through_mount STREQUAL "HELLO FROM A THIRD-PARTY PLUGIN\n" OR NOT kept STREQUAL
    "not changed\n")
  message(FATAL_ERROR
    "sdk_package: read through the mount: '${through_mount}' / '${kept}' ${e1} ${e2}")
endif()
