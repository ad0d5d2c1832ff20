"""Copy a Keras weights file without its optimizer state (the run's weights travel under 16 MiB a file)."""
import sys
import h5py
src, dst = sys.argv[1:3]
with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
    for key, value in a.attrs.items():
        b.attrs[key] = value
    for key in a.keys():
        if key != "optimizer":
            a.copy(a[key], b, name=key)
