"""c_addon: calls libgreet, a C library built by a ferry build add-on, via ctypes."""

__version__ = "0.1.0"
