"""c_addon's entry point: loads libgreet.so from beside this module and calls it.

libgreet.so is not part of the Python sources: ferry's build add-on compiles it
(see ferry.toml) and installs it into the bundle next to this file, so a run
proves that the add-on's output landed where the code looks for it.
"""

import ctypes
import sys
from pathlib import Path


def load_libgreet():
    """Opens libgreet.so beside this module and declares its two functions."""
    path = Path(__file__).with_name("libgreet.so")
    lib = ctypes.CDLL(str(path))
    lib.greet_hello.argtypes = []
    lib.greet_hello.restype = ctypes.c_char_p
    lib.greet_add.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.greet_add.restype = ctypes.c_int
    return lib


def main():
    """Prints libgreet's greeting and 2 + 3 as computed by libgreet; returns 0."""
    try:
        lib = load_libgreet()
    except OSError as err:
        print(f"c_addon: cannot load libgreet: {err}", file=sys.stderr)
        return 1
    print(lib.greet_hello().decode())
    print(lib.greet_add(2, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
