"""The caller-side checks' tests that run inside the target, one module per area, each with
its TESTS (name -> function of an entrypoints.Module and the step's spec); entrypoints.run()
finds them by name through entrypoints.all_tests()."""
