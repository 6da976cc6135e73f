"""The embedded default: a tiny local model and a demo dataset shaped like a nightly job."""
