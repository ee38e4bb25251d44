"""Why a store decodes float32-packed data to float64, and how far that is from the files.

    python -m tools.float32_packing

netCDF4 and xarray decode a variable packed with float32 scale_factor/add_offset as
float32(float32(x * scale_factor) + add_offset): two float32 roundings. This measures, over
every raw value of int8, uint8, int16 and uint16:

1. the codec routes a released reader (zarr 3.4.2 with numcodecs 0.17, no extra package)
   could decode to float32 with, against that decode: dividing in float32 (zarr's
   ``scale_offset`` decodes ``x / scale + offset`` in the array's type; numcodecs
   ``FixedScaleOffset`` after ``AsType`` to float32 does the same), dividing in float64 and
   casting once (``FixedScaleOffset`` from the integers), and a four-codec numcodecs chain
   that multiplies in effect (AsType to float64, divide by 1/scale_factor, AsType to float32,
   add the offset in float32);
2. the store's float64 decode (the attributes as JSON numbers) against the files' float32
   one, in units of the bound verify holds it to (shared.stages.verify.compare.
   float32_rounding: one float32 ulp at |value| + |add_offset|).

docs/correctness.md quotes the numbers.
"""

from __future__ import annotations

import numpy as np
from numcodecs import AsType, FixedScaleOffset  # type: ignore[import-untyped]

from shared.stages.verify.compare import float32_rounding

RAW = ("i1", "u1", "i2", "u2")
PAIRS = 300  # random (scale_factor, add_offset) pairs per raw type


def netcdf_decode(raw: np.ndarray, scale: np.float32, offset: np.float32) -> np.ndarray:
    """What netCDF4 and xarray compute (xarray.coding.variables._scale_offset_decoding)."""
    data = raw.astype(np.float32)
    data *= scale
    data += offset
    return data


def divide_in_float32(raw: np.ndarray, scale: np.float32, offset: np.float32) -> np.ndarray:
    """``x / s + offset`` in float32 with the float32 s nearest 1/scale_factor that does best
    (searched 32 float32 steps either side)."""
    want = netcdf_decode(raw, scale, offset)
    x = raw.astype(np.float32)
    best, fewest = want, raw.size + 1
    s = np.float32(1) / scale
    candidates = [s]
    up = down = s
    for _ in range(32):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
        candidates += [up, down]
    for candidate in candidates:
        got = x / candidate + offset
        wrong = int(np.count_nonzero(got != want))
        if wrong < fewest:
            best, fewest = got, wrong
    return best


def divide_in_float64(raw: np.ndarray, scale: np.float32, offset: np.float32) -> np.ndarray:
    codec = FixedScaleOffset(
        offset=float(offset), scale=1 / float(scale), dtype="f4", astype=raw.dtype.str
    )
    return np.asarray(codec.decode(raw.tobytes()))


def four_codecs(raw: np.ndarray, scale: np.float32, offset: np.float32) -> np.ndarray:
    wide = AsType(encode_dtype=raw.dtype.str, decode_dtype="f8").decode(raw.tobytes())
    scaled = FixedScaleOffset(offset=0.0, scale=1 / float(scale), dtype="f8").decode(wide)
    narrow = AsType(encode_dtype="f8", decode_dtype="f4").decode(scaled)
    return np.asarray(FixedScaleOffset(offset=float(offset), scale=1.0, dtype="f4").decode(narrow))


def main() -> None:
    rng = np.random.default_rng(2)
    routes = {
        "divide in float32": divide_in_float32,
        "divide in float64, cast once": divide_in_float64,
        "four-codec chain": four_codecs,
    }
    wrong = dict.fromkeys(routes, 0)
    ratios: list[np.ndarray] = []
    half = beyond_without_offset = values = pairs = 0
    for code in RAW:
        info = np.iinfo(code)
        raw = np.arange(info.min, info.max + 1).astype(code)
        for _ in range(PAIRS):
            kind = int(rng.integers(3))  # no offset, a large one, a small one
            scale = np.float32(rng.uniform(1e-6, 2))
            offset = np.float32((0.0, rng.uniform(-1000, 1000), rng.uniform(-1, 1))[kind])
            want = netcdf_decode(raw, scale, offset)
            for name, route in routes.items():
                wrong[name] += int(np.count_nonzero(route(raw, scale, offset) != want))
            store = raw.astype(np.float64) * float(scale) + float(offset)
            apart = np.abs(store - want.astype(np.float64))
            bound = float32_rounding(want, abs(float(offset)))
            ratios.append(apart / bound)
            half += int(np.count_nonzero(apart > bound / 2))
            alone = np.spacing(np.abs(want)).astype(np.float64)
            beyond_without_offset += int(np.count_nonzero(apart > alone))
            values += raw.size
            pairs += 1
    ratio = np.concatenate(ratios)
    print(f"{values:,} raw values, {pairs} (scale_factor, add_offset) pairs over {', '.join(RAW)}")
    print("float32 decodes that differ from netCDF4's, per codec route:")
    for name, count in wrong.items():
        print(f"  {name:30} {count:>12,} ({100 * count / values:.2f}%)")
    print("the store's float64 decode against the files' float32 one:")
    print(f"  largest distance / bound       {ratio.max():.4f}")
    print(f"  at the bound exactly           {int(np.count_nonzero(ratio == 1.0)):>12,}")
    print(f"  over the bound                 {int(np.count_nonzero(ratio > 1.0)):>12,}")
    print(f"  over half the bound            {half:>12,} ({100 * half / values:.1f}%)")
    print(f"  over one ulp at |value| alone  {beyond_without_offset:>12,}")


if __name__ == "__main__":
    main()
