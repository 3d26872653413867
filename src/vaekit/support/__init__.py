"""Support used by every wing: how messages spell arguments (``spelling``), progress bars and
durations (``progress``), strict JSON (``jsonsafe``), run provenance (``provenance``), memory
estimates before allocating (``memory``), the device a command runs on (``device``) and the
process's runtime settings (``runtime``).
Nothing here imports the rest of vaekit."""
