# cmake -DHUBJS_DIR=... -DFIXTURES=... -P run_hubjs_check.cmake
# Installs the pinned @huggingface/hub (package-lock.json) when missing, then runs the check.
find_program(NODE node)
find_program(NPM npm)
if(NOT NODE OR NOT NPM)
  message(FATAL_ERROR "hub_emulator_hubjs_check needs node and npm (apt: nodejs npm)")
endif()
if(NOT EXISTS ${HUBJS_DIR}/node_modules/@huggingface/hub/package.json)
  message(STATUS "installing @huggingface/hub: npm ci in ${HUBJS_DIR}")
  execute_process(COMMAND ${NPM} ci --prefix ${HUBJS_DIR} --no-audit --no-fund
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "npm ci in ${HUBJS_DIR} failed (${rc}); the JS client check cannot run")
  endif()
endif()
execute_process(COMMAND ${NODE} ${HUBJS_DIR}/check_emulator.mjs --fixtures ${FIXTURES}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the official JS client disagrees with the Hub emulator (exit ${rc})")
endif()
