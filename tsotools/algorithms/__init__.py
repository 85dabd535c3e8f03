"""Pure algorithms on numpy arrays: no file I/O, no click, no printing, inputs never modified."""
