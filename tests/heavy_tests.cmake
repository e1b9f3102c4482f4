# Read by ctest after the GoogleTest discovery files (TEST_INCLUDE_FILES, so
# the discovered names exist): the discovered tests that keep every core
# busy for a long while ask for two processors, so that `ctest -j2` on a
# 2-core machine runs them alone and packs the many short and network-bound
# tests two at a time. The add_test() ones (the mutation check, the recipe,
# the reference generators) say so where tests/CMakeLists.txt adds them.
# Alone, they keep OpenMP's default waiting (scripts/test.sh sets passive
# waiting for the tests that run side by side).
set_tests_properties(
  AmpTraining.Bf16AndFp16FollowTheFloat32CurveOver300Steps
  GradCam.HeatmapPeaksOnTheLesion
  StudyMetrics.BootstrapIntervalCoversAKnownSensitivity
  PROPERTIES PROCESSORS 2 ENVIRONMENT_MODIFICATION "OMP_WAIT_POLICY=unset:")
