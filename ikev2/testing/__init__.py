"""Test harnesses reusable by later interop tests: the QEMU guest with a real ESP kernel."""
