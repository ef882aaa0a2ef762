/* A valid shared library that is not a kvq plugin: it lacks kvq_plugin_entry. */
__attribute__((visibility("default"))) int kvq_bad_input_not_a_plugin(void) {
  return 42;
}
