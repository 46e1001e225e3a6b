# Asked of the build interpreter by ferry: what it is and where its parts live.
import importlib.util
import json
import os
import platform
import sys
import sysconfig

cv = sysconfig.get_config_var
print(json.dumps({
    "version": "%d.%d.%d" % sys.version_info[:3],
    "major": sys.version_info[0],
    "minor": sys.version_info[1],
    "implementation": sys.implementation.name,
    "executable": os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable),
    "base_prefix": sys.base_prefix,
    "stdlib": sysconfig.get_path("stdlib"),
    "platstdlib": sysconfig.get_path("platstdlib"),
    "libdir": cv("LIBDIR") or "",
    "instsoname": cv("INSTSONAME") or "",
    "enable_shared": bool(cv("Py_ENABLE_SHARED")),
    "machine": platform.machine(),
    "has_pip": importlib.util.find_spec("pip") is not None,
}))
