"""Rate-distortion of medzoo streams against JPEG, JPEG 2000, WebP and JPEG XL, with Bjontegaard deltas.

Three kinds of learned codec: VQ-VAEs (each model one rate point; several make a curve),
hyperprior codecs (:class:`~medzoo.models.hyperprior.HyperpriorCodec`: each quality
level one rate point, the levels a curve) and any-size autoencoders coding their rounded
latent (:mod:`medzoo.codec.latent`: a point per level, the levels a curve).

Every image is compressed on its own, as a user would store it, and its rate is
the size of the complete stream or file in bits per pixel of the model input
(128 x 128): medzoo streams include their header and checksum, JPEG its JFIF
tables, JPEG 2000 its codestream header. Distortion is measured against the same
float reference for every codec: the model input, i.e. the preprocessed image; the
classical codecs encode its rounding to the stored bits (8 for radiographs, 12 for CT in
Hounsfield units from -1024 to 3071 HU). The quality metrics (:func:`quality_metrics`):
PSNR, SSIM and MS-SSIM over the value range, and for CT also PSNR in a soft-tissue
window (level 40, width 400 HU), where a radiologist reads most of it. The guideline
ratios follow the modality: 10:1 and 30:1 of the stored bits for CR/DX, 8:1 and 15:1 for CT.

Each VQ-VAE gives one rate point; several VQ-VAEs (different code map sizes or
codebooks) form a curve; a hyperprior codec gives one curve of its own. BD-rates are computed against an anchor codec (JPEG
2000 by default) where the PSNR (or SSIM) ranges overlap, and reported as NaN
with the reason where they do not. A VQ-VAE point is also compared one at a time:
the anchor's rate at the same PSNR, interpolated along its curve.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy as np

from medzoo.errors import ConfigError, DataError
from medzoo.evaluate import classical, plots
from medzoo.codec.stream import DEFAULT_KIND, is_stream_coder, pack, raw_bits, zlib_bytes
from medzoo.evaluate.common import (
    Result,
    format_table,
    given_or_loaded,
    model_label,
    model_version,
    progress,
    resolve_model,
    summary,
)
from medzoo.codec.entropy import KINDS, entropy_model_for, weights_fingerprint
from medzoo.metrics import ms_ssim, psnr, ssim
from medzoo.evaluate.report import markdown_table
from medzoo.evaluate.stats import bd_rate, quality_at_rate, rate_at_quality


#: lossy compression ratios that radiology guidelines allow for CR/DX chest images, of the stored bits
GUIDELINE_RATIOS = {"10:1": (10, "German consensus, CR/DX chest"), "30:1": (30, "Canadian guideline, CR/DX chest")}
#: the same for CT
CT_GUIDELINE_RATIOS = {"8:1": (8, "German consensus, CT"), "15:1": (15, "Canadian guideline, CT body")}
#: the soft-tissue window (level, width) in HU in which CT is also measured
SOFT_TISSUE_WINDOW = (40.0, 400.0)
#: display names of the quality metrics
METRIC_LABELS = {"psnr": "PSNR", "ssim": "SSIM", "ms_ssim": "MS-SSIM", "psnr_soft_tissue": "PSNR soft tissue"}


def _is_hu(spec) -> bool:
    return spec is not None and getattr(spec, "units", None) == "HU"


def stored_bits_of(spec) -> int:
    """Bits a pixel of this spec's input range holds: 12 for CT from -1024 to 3071 HU, else 8 (8-bit images)."""
    if not _is_hu(spec):
        return 8
    low, high = spec.input_range
    return int(math.ceil(math.log2(float(high) - float(low) + 1.0)))


def stored_pixels(x, bits: int) -> np.ndarray:
    """Images in [0, 1] (N, H, W, 1) rounded to ``bits``-bit integers (N, H, W), as a classical codec takes them."""
    return np.rint(np.clip(x[..., 0], 0.0, 1.0) * (2 ** bits - 1)).astype(np.uint8 if bits <= 8 else np.uint16)


def quality_metrics(spec=None) -> dict:
    """``{name: fn(reference, decoded) -> per-image values}`` for images in [0, 1] of ``spec``: PSNR, SSIM and
    MS-SSIM; for a spec in Hounsfield units also PSNR in :data:`SOFT_TISSUE_WINDOW`."""
    metrics = {"psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim}
    if _is_hu(spec):
        low, high = (float(v) for v in spec.input_range)
        level, width = SOFT_TISSUE_WINDOW
        bottom = (level - width / 2 - low) / (high - low)  # the window's edges on the [0, 1] scale
        span = width / (high - low)

        def soft_tissue(reference, decoded):
            def windowed(v):
                return np.clip((np.asarray(v, np.float32) - bottom) / span, 0.0, 1.0)
            return psnr(windowed(reference), windowed(decoded))

        metrics["psnr_soft_tissue"] = soft_tissue
    return metrics


def _measure(metrics, reference, decoded) -> dict:
    return {name: np.asarray(fn(reference, decoded), np.float64) for name, fn in metrics.items()}


@dataclasses.dataclass(repr=False, eq=False)
class CompressionResult(Result):
    """Rate-distortion points of the VQ-VAE(s) and curves of the classical codecs.

    Attributes:
        models: one dict per VQ-VAE: ``bpp`` (mean stream size per image), ``payload_bpp``,
            ``psnr``, ``ssim``, ``rates`` (bpp of each entropy model kind, zlib and raw codes,
            and the ideal cross-entropy), ``per_image`` arrays.
        codecs: ``{name: sweep dict}`` (see :func:`medzoo.evaluate.classical.sweep`).
        bd: ``{curve: {metric: BDResult dict}}`` against ``anchor``, for each of ``metrics``.
        points: per VQ-VAE, the anchor's rate at the same PSNR and the rate change (percent, negative = fewer bits).
        guidelines: ``{ratio: {"bpp", "source", "curves": {curve: {metric: value}}}}``: every curve's quality
            at the guideline compression ratios of the stored bits (interpolated; None outside a curve).
        metrics: ``{name: label}`` of the quality metrics measured (PSNR and SSIM first).
    """

    source: str
    num_images: int
    image_shape: tuple
    kind: str
    models: list
    codecs: dict
    anchor: str
    bd: dict
    points: list
    examples: dict
    guidelines: dict = dataclasses.field(default_factory=dict)
    metrics: dict = dataclasses.field(default_factory=lambda: {"psnr": "PSNR", "ssim": "SSIM"})
    task = "compression"

    def to_dict(self, per_image=False) -> dict:
        def strip(d):
            d = {k: v for k, v in d.items() if k not in ("example", "per_image") or (per_image and k == "per_image")}
            return d

        return {"task": self.task, "data": self.source, "images": self.num_images,
                "image_shape": list(self.image_shape), "entropy_model": self.kind,
                "rate": "bits per pixel of the complete stream/file per image (headers included)",
                "models": [strip(m) for m in self.models], "codecs": {k: strip(v) for k, v in self.codecs.items()},
                "anchor": self.anchor, "bd_rate_percent": self.bd, "single_points": self.points,
                "guideline_rates": self.guidelines, "metrics": self.metrics}

    def table(self) -> str:
        rows = []
        for m in self.models:
            rows.append([m["model"], m.get("curve", "VQ-VAE"), m["bpp"], m["payload_bpp"], m["one_stream_bpp"],
                         m["psnr"], m["ssim"]])
        text = format_table(["model", "kind", "bpp", "payload bpp", "one-stream bpp", "PSNR", "SSIM"], rows,
                            title=f"compression on {self.source} ({self.num_images} images, each its own stream)")
        rate_rows = [[m["model"], m["rates"]["raw"], m["rates"]["zlib"], m["rates"]["iid"], m["rates"]["position"],
                      m["rates"]["context"], m["rates"]["ideal_context"]] for m in self.models if "curve" not in m]
        text += "" if not rate_rows else "\n\n" + format_table(["model", "raw log2K", "zlib", "iid", "position", "context", "ideal ctx"],
                                      rate_rows, title="code-map payload in bits per pixel (entropy models)")
        codec_rows = []
        for name, c in self.codecs.items():
            codec_rows.append([c["label"], min(c["bpp"]), max(c["bpp"]), min(c["psnr"]), max(c["psnr"])])
        text += "\n\n" + format_table(["codec", "bpp min", "bpp max", "PSNR min", "PSNR max"], codec_rows,
                                      title="classical codec sweeps")
        bd_rows = [[curve, *(v[m]["value_percent"] for m in self.metrics), v["psnr"]["note"]]
                   for curve, v in self.bd.items()]
        text += "\n\n" + format_table(["curve", *(f"BD-rate {label} %" for label in self.metrics.values()),
                                       "note (PSNR)"], bd_rows,
                                      title=f"Bjontegaard delta rate against {self.codecs[self.anchor]['label']} "
                                            "(negative = fewer bits)")
        point_rows = [[p["model"], p["bpp"], p["psnr"], p["anchor_bpp_at_same_psnr"], p["rate_change_percent"],
                       p["note"]] for p in self.points]
        text += "\n\n" + format_table(["model", "bpp", "PSNR", f"{self.anchor} bpp @ PSNR", "rate change %", "note"],
                                      point_rows, title="each medzoo rate point against the anchor at equal PSNR "
                                                        "(negative = fewer bits)")
        codec_rows = [[p["model"], self.codecs[name]["label"], v["bpp_at_same_psnr"], v["psnr_at_same_bpp"],
                       v["ssim_at_same_bpp"]] for p in self.points for name, v in p["codecs"].items()]
        text += "\n\n" + format_table(["model", "codec", "bpp @ same PSNR", "PSNR @ same bpp", "SSIM @ same bpp"],
                                      codec_rows, title="every codec at each medzoo rate point ('-': outside the "
                                                        "codec's sweep)")
        rows = []
        for p in self.points:
            for name, v in p["codecs"].items():
                each = v.get("per_image") or {}
                if not any(m.get("images") for m in each.values()):
                    continue
                rows.append([p["model"], self.codecs[name]["label"],
                             *(each[m]["mean_difference"] for m in self.metrics if m in each),
                             *(f"{each[m]['ahead']}/{each[m]['images']}" for m in self.metrics if m in each)])
        if rows:
            text += "\n\n" + format_table(
                ["model", "codec", *(f"{label} diff" for label in self.metrics.values()),
                 *(f"{label} ahead" for label in self.metrics.values())], rows,
                title="image by image at the same bytes: the medzoo point minus each codec (its sweep of that "
                      "image interpolated at the bits the point spent on it; mean over images), and on how many "
                      "images the point is at least as good")
        if self.guidelines:
            ratios = list(self.guidelines)
            curves = list(next(iter(self.guidelines.values()))["curves"])
            rows = [[c, *(self.guidelines[r]["curves"][c][m] for r in ratios for m in self.metrics)]
                    for c in curves]
            heads = [f"{label} @ {r} ({self.guidelines[r]['bpp']:.3g} bpp)" for r in ratios
                     for label in self.metrics.values()]
            text += "\n\n" + format_table(["curve", *heads], rows, title="quality at the radiology guidelines' "
                                          "compression ratios of the stored bits ('-': outside the curve)")
        return text

    def markdown(self) -> str:
        """Two Markdown tables: every codec at each VQ-VAE's rate point, and BD-rates against the anchor.

        The first has, per VQ-VAE, its own row (bpp, PSNR, SSIM of its streams) and one row per classical
        codec at the same bpp (PSNR and SSIM interpolated along the codec's sweep) with the codec's bpp at
        the same PSNR and how many more (+) or fewer (-) bits the VQ-VAE needs for that PSNR; '-' where the
        point lies outside a codec's sweep.
        """
        def f(v, digits):
            return None if v is None or not math.isfinite(v) else f"{v:.{digits}f}"

        def change(vq_bpp, codec_bpp):
            if codec_bpp is None or not math.isfinite(codec_bpp) or codec_bpp <= 0:
                return None
            return f"{100.0 * (vq_bpp / codec_bpp - 1.0):+.1f}%"

        rows = []
        for p in sorted(self.points, key=lambda p: p["bpp"]):  # the rate points from low to high
            rows.append([p["model"], f"{p.get('curve', 'VQ-VAE')} (medzoo stream)", f(p["bpp"], 3), f(p["psnr"], 2),
                         f(p["ssim"], 3), f(p["bpp"], 3), None])
            for name, v in p["codecs"].items():
                rows.append([p["model"], self.codecs[name]["label"], f(p["bpp"], 3), f(v["psnr_at_same_bpp"], 2),
                             f(v["ssim_at_same_bpp"], 3), f(v["bpp_at_same_psnr"], 3),
                             change(p["bpp"], v["bpp_at_same_psnr"])])
        rd = markdown_table(["rate point", "codec", "bpp", "PSNR dB", "SSIM", "bpp at equal PSNR",
                             "medzoo rate vs codec"], rows)
        bd_rows = [[curve, *(f(v[m]["value_percent"], 1) for m in self.metrics), v["psnr"]["note"]]
                   for curve, v in self.bd.items()]
        bd = markdown_table(["curve", *(f"BD-rate {label} %" for label in self.metrics.values()), "note"], bd_rows)
        text = (f"Rate-distortion on {self.source} ({self.num_images} images, each its own stream or file; bits "
                "per pixel of the whole file, headers included): each classical codec at the rate of each "
                f"medzoo rate point.\n\n{rd}\n\nBjontegaard delta rate against {self.codecs[self.anchor]['label']} "
                "(negative: fewer bits for the same quality; '-': the curves do not overlap or there is a single "
                f"rate point).\n\n{bd}")
        if self.guidelines:
            ratios = list(self.guidelines)
            curves = list(self.guidelines[ratios[0]]["curves"])
            rows = [[c, *(f(self.guidelines[r]["curves"][c][m], 2 if m.startswith("psnr") else 3) for r in ratios
                          for m in self.metrics)] for c in curves]
            heads = [f"{label}{' dB' if m.startswith('psnr') else ''} at {r} ({self.guidelines[r]['bpp']:.3g} bpp)"
                     for r in ratios for m, label in self.metrics.items()]
            sources = "; ".join(f"{r}: {g['source']}" for r, g in self.guidelines.items())
            text += (f"\n\nQuality at the compression ratios that radiology guidelines allow ({sources}) of the "
                     f"{self.guidelines[ratios[0]]['stored_bits']} stored bits per pixel ('-': outside a curve)."
                     f"\n\n{markdown_table(['curve', *heads], rows)}")
        return text

    def plot(self, path) -> pathlib.Path:
        fig = plots.figure(5.5 * len(self.metrics), 4.2)
        axes = fig.subplots(1, len(self.metrics))
        for ax, metric in zip(axes, self.metrics):
            for i, (name, c) in enumerate(self.codecs.items()):
                ax.plot(c["bpp"], c[metric], "o-", ms=3, lw=1.2, color=plots.PALETTE[i + 1], label=c["label"])
            curves = {}
            for m in self.models:
                curves.setdefault(m.get("curve", "VQ-VAE"), []).append(m)
            span = np.ptp([m[metric] for m in self.models] + [v for c in self.codecs.values() for v in c[metric]])
            for j, (curve, members) in enumerate(curves.items()):
                pts = sorted(members, key=lambda m: m["bpp"])
                rates, quality = [m["bpp"] for m in pts], [m[metric] for m in pts]
                style = {"ms": 11 if j == 0 else 8, "color": "black" if j else plots.PALETTE[0]}
                # the line is the curve (the points no other beats); a beaten model is a star off it
                ax.plot(*frontier(rates, quality), "*-", lw=1.5, label=f"{curve} (medzoo stream)", **style)
                ax.plot(rates, quality, "*", **style)
                for k, m in enumerate(pts):
                    # below-right of its star, unless the next star is near enough for the labels to collide
                    crowded = any(np.log10(n["bpp"] / m["bpp"]) < 0.5 and abs(n[metric] - m[metric]) < 0.04 * span
                                  for n in pts[k + 1:])
                    ax.annotate(m["model"] if curve == "VQ-VAE" else f"q{m['quality']}", (m["bpp"], m[metric]),
                                textcoords="offset points", xytext=(-6, 6) if crowded else (4, -10),
                                ha="right" if crowded else "left", fontsize=7)
            for ratio, g in self.guidelines.items():
                ax.axvline(g["bpp"], color="grey", ls=":", lw=1)
                ax.annotate(ratio, (g["bpp"], 0.02), xycoords=("data", "axes fraction"), fontsize=7, color="grey",
                            xytext=(2, 0), textcoords="offset points")
            plots.log_rate_axis(ax)
            ax.set_xlabel("bits per pixel (whole file per image)")
            ax.set_ylabel(self.metrics[metric] + (" (dB)" if metric.startswith("psnr") else ""))
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"Rate-distortion on {self.source} ({self.num_images} images, "
                     f"{self.image_shape[0]}x{self.image_shape[1]})", fontsize=10)
        return plots.save(fig, path)

    def extra_figures(self) -> dict:
        return {"compression_examples": self._plot_examples}

    def _plot_examples(self, path) -> pathlib.Path:
        """The first image: original, each VQ-VAE, and each codec at the setting closest in rate to a VQ-VAE."""
        original = self.examples["original"]
        shown = [m for m in self.models if m["model"] in self.examples]  # a codec shows its middle level
        target = shown[0]["per_image"]["bpp"][0] if shown else 0.2
        panels = [("original", original)]
        for m in shown:
            panels.append((f"{m['model']}\n{m['per_image']['bpp'][0]:.3f} bpp, "
                           f"{m['per_image']['psnr'][0]:.1f} dB", self.examples[m["model"]]))
        for c in self.codecs.values():
            rates = c["per_image"]["bpp"][:, 0]
            s = int(np.argmin(np.abs(np.log(rates) - math.log(target))))
            panels.append((f"{c['label']} ({c['parameter']} {c['settings'][s]})\n{rates[s]:.3f} bpp, "
                           f"{c['per_image']['psnr'][s, 0]:.1f} dB", c["example"][s]))
        fig = plots.figure(2.1 * len(panels), 2.6)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, image) in zip(axes, panels):
            plots.show_image(ax, image, title)
        return plots.save(fig, path)


def _vq_point(model, x, kind, entropy_model, batch_size, enabled, metrics) -> tuple[dict, np.ndarray]:
    codes = model.encode(x, batch_size=batch_size)
    h, w = x.shape[1:3]  # the images' own size: an any-size model's input shape says None
    rec = model.decode(codes, batch_size=batch_size, output_size=(h, w) if model.image_shape[0] is None else None)
    image_shape = x.shape[1:]
    name = model_label(model) if getattr(model, "zoo_metadata", None) else ""
    fingerprint = weights_fingerprint(model)
    sizes = {k: np.zeros(len(x)) for k in KINDS}
    for i in progress(range(len(x)), f"streams {model_label(model)}", enabled=enabled):
        for k in KINDS:
            sizes[k][i] = len(pack(codes[i:i + 1], entropy_model, model_name=name, model_version=model_version(model),
                                   weights_id=fingerprint, image_shape=image_shape, kind=k))
    # header + checksum bytes are the same for every kind: measure them once on the chosen kind
    from medzoo.codec.stream import read_header

    one = pack(codes[:1], entropy_model, model_name=name, model_version=model_version(model),
               weights_id=fingerprint, image_shape=image_shape, kind=kind)
    header = read_header(one)
    overhead = header.total_bytes - header.payload_bytes
    batch = pack(codes, entropy_model, model_name=name, model_version=model_version(model), weights_id=fingerprint,
                 image_shape=image_shape, kind=kind)  # all images in one stream: the header amortised
    pixels = h * w
    bpp = 8.0 * sizes[kind] / pixels
    quality = _measure(metrics, x, rec)
    rates = {k: float(np.mean(8.0 * (sizes[k] - overhead) / pixels)) for k in KINDS}
    rates["zlib"] = float(np.mean([8.0 * zlib_bytes(c) / pixels for c in codes]))
    rates["raw"] = raw_bits(model.num_embeddings, codes.shape[1:]) / pixels
    rates["ideal_context"] = entropy_model.cross_entropy(codes, kind) * codes[0].size / pixels
    point = {
        "model": model_label(model), "num_codes": int(model.num_embeddings), "code_shape": list(codes.shape[1:]),
        "bpp": float(bpp.mean()), "payload_bpp": rates[kind], "header_bytes": int(overhead),
        "one_stream_bpp": 8.0 * len(batch) / (len(x) * pixels),
        **{m: float(v.mean()) for m, v in quality.items()},
        "psnr_summary": summary(quality["psnr"]), "bpp_summary": summary(bpp), "rates": rates,
        "entropy_model": {"digest": entropy_model.digest[:16], **{k: v for k, v in entropy_model.info.items()
                                                                  if k != "weights_fingerprint"}},
        "per_image": {"bpp": bpp, **quality},
    }
    return point, rec[0]


def _codec_points(model, x, batch_size, enabled, metrics) -> tuple[list, np.ndarray]:
    """One point per quality level of a hyperprior codec or an autoencoder's latent: real streams, one per
    image, decoded back."""
    from medzoo.codec.qualities import coded_one_by_one, level_fields, num_levels
    from medzoo.codec.stream import compress, read_header

    label = model_label(model)
    pixels = x.shape[1] * x.shape[2]
    points, example = [], None
    levels = num_levels(model)
    for q in progress(range(levels), f"streams {label}", enabled=enabled):
        sizes, rec = coded_one_by_one(model, x, q)
        header = read_header(compress(x[:1], model, quality=q))
        overhead = header.total_bytes - header.payload_bytes
        bpp = 8.0 * sizes / pixels
        quality = _measure(metrics, x, rec)
        batch = compress(x[:batch_size], model, quality=q)
        points.append({
            "model": f"{label} q{q}", "curve": label, "quality": q, **level_fields(model, q),
            "num_codes": None, "code_shape": list(header.code_shape),
            "bpp": float(bpp.mean()), "payload_bpp": float(np.mean(8.0 * (sizes - overhead) / pixels)),
            "header_bytes": int(overhead), "one_stream_bpp": 8.0 * len(batch) / (min(len(x), batch_size) * pixels),
            **{m: float(v.mean()) for m, v in quality.items()},
            "psnr_summary": summary(quality["psnr"]), "bpp_summary": summary(bpp),
            "rates": {k: None for k in (*KINDS, "zlib", "raw", "ideal_context")},
            "per_image": {"bpp": bpp, **quality},
        })
        if q == levels // 2:
            example = rec[0]
    return points, example


def compression(models="vqvae-chestxray", images=None, *, split="test", dataset=None, max_images=None, seed=0,
                codecs=None, anchor="jpeg2000", kind=DEFAULT_KIND, entropy_models=None, batch_size=64,
                progress_bars=None) -> CompressionResult:
    """Rate-distortion of one or more VQ-VAEs or hyperprior codecs against classical codecs on a split.

    Args:
        models: a VQ-VAE or hyperprior codec, or a list of them (zoo names, preset paths or
            instances); several VQ-VAEs give a rate-distortion curve (they must share an input
            shape), a hyperprior codec one curve over its quality levels.
        images: arrays to use instead of loading ``split`` (prepared with the first model's spec).
        codecs: classical codecs to sweep (default: every one available that takes the stored bits: jpeg,
            jpeg2000, htj2k, webp and jpegxl for 8-bit radiographs; jpeg2000, htj2k and jpegxl for 12-bit CT).
        anchor: codec the BD-rates are relative to.
        kind: entropy model kind of the VQ-VAE streams (all kinds are measured; this one is reported as bpp).
        entropy_models: optional entropy models, a list aligned with ``models`` or ``{model name: EntropyModel}``;
            default: each model's cached one, fitted on its training split on first use.
    """
    model_list = [resolve_model(m) for m in (models if isinstance(models, (list, tuple)) else [models])]
    if not model_list:
        raise ConfigError("compression needs at least one VQ-VAE")
    vq_list = [m for m in model_list if hasattr(m, "quantizer")]
    for m in model_list:
        if not is_stream_coder(m):
            raise ConfigError(f"{model_label(m)} is neither a VQ-VAE, a hyperprior codec nor an any-size "
                              "autoencoder; compression evaluates medzoo streams")
    fixed = {tuple(m.image_shape) for m in vq_list if m.image_shape[0] is not None}  # any-size models take any
    if len(fixed) > 1:
        raise ConfigError("all VQ-VAEs of a rate-distortion curve must take the same images; their input shapes "
                          f"differ: {sorted(fixed)}")
    first = model_list[0]
    spec = getattr(first, "preprocess_spec", None)
    bits = stored_bits_of(spec)
    codecs = classical.available_codecs(bits) if codecs is None else list(codecs)
    if anchor not in codecs:
        raise ConfigError(f"the anchor codec {anchor!r} must be among the codecs swept {codecs}")
    x, _, source = given_or_loaded(first, images, None, split, dataset=dataset, max_images=max_images, seed=seed)
    if x.shape[-1] != 1:
        raise DataError("the classical-codec comparison handles grey images only")
    for m in vq_list:
        if m.image_shape[0] is not None and tuple(m.image_shape) != x.shape[1:]:
            raise ConfigError(f"{model_label(m)} takes {m.image_shape[0]} x {m.image_shape[1]} images; those of "
                              f"this comparison are {x.shape[1]} x {x.shape[2]}: list it first, or compare it apart")

    if isinstance(entropy_models, (list, tuple)):
        if len(entropy_models) != len(model_list):
            raise ConfigError("give one entropy model per VQ-VAE (or a dict keyed by model name)")
        given = list(entropy_models)
    else:
        given = [(entropy_models or {}).get(model_label(m)) for m in model_list]
    metrics = quality_metrics(spec)
    points, examples = [], {"original": x[0]}
    for m, em in zip(model_list, given):
        if not hasattr(m, "quantizer"):
            codec_points, example = _codec_points(m, x, batch_size, progress_bars, metrics)
            points += codec_points
            examples[codec_points[len(codec_points) // 2]["model"]] = example
            continue
        em = em or entropy_model_for(m)
        point, example = _vq_point(m, x, kind, em, batch_size, progress_bars, metrics)
        points.append(point)
        examples[point["model"]] = example

    stored = stored_pixels(x, bits)
    sweeps = {name: classical.sweep(name, stored, x, bits=bits, metrics=metrics, progress=progress_bars)
              for name in codecs}
    names = list(metrics)
    bd, singles = _compare(points, sweeps, anchor, names)
    ratios = CT_GUIDELINE_RATIOS if _is_hu(spec) else GUIDELINE_RATIOS
    return CompressionResult(source, len(x), tuple(first.image_shape), kind, points, sweeps, anchor, bd, singles,
                             examples, _at_guideline_rates(points, sweeps, bits, ratios, names),
                             {m: METRIC_LABELS[m] for m in names})


def _at_guideline_rates(points, sweeps, stored_bits, ratios, metrics) -> dict:
    """Each curve's quality in each of ``metrics`` at the guideline ``ratios`` (:data:`GUIDELINE_RATIOS`,
    :data:`CT_GUIDELINE_RATIOS`) of ``stored_bits`` per pixel (interpolated)."""
    curves = {}
    for p in points:
        curves.setdefault(p.get("curve", "VQ-VAE"), []).append(p)
    curves = {name: {m: frontier([p["bpp"] for p in members], [p[m] for p in members]) for m in metrics}
              for name, members in curves.items()}
    curves.update({c["label"]: {m: (np.array(c["bpp"]), np.array(c[m])) for m in metrics}
                   for c in sweeps.values()})
    out = {}
    for ratio, (factor, source) in ratios.items():
        bpp = stored_bits / factor
        at = {}
        for name, c in curves.items():
            values = {m: quality_at_rate(*c[m], bpp) if len(c[m][0]) > 1 else float("nan") for m in metrics}
            at[name] = {m: (v if math.isfinite(v) else None) for m, v in values.items()}
        out[ratio] = {"bpp": bpp, "stored_bits": stored_bits, "source": source, "curves": at}
    return out


def frontier(rates, quality) -> tuple[np.ndarray, np.ndarray]:
    """The points of ``(rates, quality)`` that no other point beats: as few or fewer bits for as much or more
    quality, better in one. Zoo models at one rate (a v1 and a v2 VQ-VAE) would otherwise bend a curve."""
    rates, quality = np.asarray(rates, float), np.asarray(quality, float)
    beaten = [bool(np.any((rates <= r) & (quality >= q) & ((rates < r) | (quality > q))))
              for r, q in zip(rates, quality)]
    keep = ~np.array(beaten, bool)
    order = np.argsort(rates[keep], kind="stable")
    return rates[keep][order], quality[keep][order]


def same_bytes_per_image(point, sweep, metric) -> dict:
    """A learned rate point against a classical codec image by image, at the bytes it spent on each image.

    The curves above compare means over images at one setting each: a step for the learned codec
    (bits vary with the image), a target quality for a classical one. Their difference then
    includes how each spreads bits across images, which a user coding one image at a given
    ratio does not get. Here each image's ``metric`` is set against the codec's own sweep of that
    image, interpolated (over log-rate) at the bits per pixel the learned codec spent on it.

    Returns:
        ``{"mean_difference"`` (learned minus codec, over the images inside the codec's sweep),
        ``"ahead"`` (images where the learned codec is at least as good), ``"images"`` (those
        compared)}``; ``mean_difference`` is None when no image lies inside the sweep.
    """
    ours, theirs = point.get("per_image") or {}, sweep.get("per_image") or {}
    if metric not in ours or metric not in theirs:
        return {"mean_difference": None, "ahead": 0, "images": 0}
    rates, values = np.asarray(theirs["bpp"]), np.asarray(theirs[metric])
    differences = np.array([ours[metric][i] - quality_at_rate(rates[:, i], values[:, i], rate)
                            for i, rate in enumerate(np.asarray(ours["bpp"]))])
    inside = differences[np.isfinite(differences)]
    return {"mean_difference": float(inside.mean()) if len(inside) else None,
            "ahead": int((inside >= 0).sum()), "images": int(len(inside))}


def _compare(points, sweeps, anchor, metrics) -> tuple[dict, list]:
    a = sweeps[anchor]
    bd = {}
    grouped = {}
    for p in points:
        grouped.setdefault(p.get("curve", "VQ-VAE"), []).append(p)
    # a learned curve is what its models offer: per metric, the points no other point beats on rate and quality
    curves = {name: {m: frontier(np.array([p["bpp"] for p in members]), np.array([p[m] for p in members]))
                     for m in metrics} for name, members in grouped.items()}
    for name, c in sweeps.items():
        if name != anchor:
            curves[c["label"]] = {m: (np.array(c["bpp"]), np.array(c[m])) for m in metrics}
    for label, by_metric in curves.items():
        entry = {}
        for metric, (rates, quality) in by_metric.items():
            if len(rates) < 2:
                entry[metric] = {"value_percent": None, "quality_range": None, "overlap": 0.0, "degree": 0,
                                 "method": "cubic", "note": "a single rate point has no BD-rate; see single_points"}
            else:
                entry[metric] = bd_rate(a["bpp"], a[metric], rates, quality).to_dict()
        bd[label] = entry
    singles = []
    for p in points:
        anchor_rate = rate_at_quality(a["bpp"], a["psnr"], p["psnr"])
        change = (p["bpp"] / anchor_rate - 1.0) * 100.0 if math.isfinite(anchor_rate) else float("nan")
        per_codec = {}
        for name, c in sweeps.items():
            rate = rate_at_quality(c["bpp"], c["psnr"], p["psnr"])
            per_codec[name] = {"bpp_at_same_psnr": rate, "psnr_at_same_bpp": quality_at_rate(c["bpp"], c["psnr"],
                                                                                              p["bpp"]),
                               "ssim_at_same_bpp": quality_at_rate(c["bpp"], c["ssim"], p["bpp"]),
                               "per_image": {m: same_bytes_per_image(p, c, m) for m in metrics}}
        singles.append({"model": p["model"], "curve": p.get("curve", "VQ-VAE"), "bpp": p["bpp"], "psnr": p["psnr"],
                        "ssim": p["ssim"],
                        "anchor_bpp_at_same_psnr": None if math.isnan(anchor_rate) else anchor_rate,
                        "rate_change_percent": None if math.isnan(change) else change,
                        "codecs": per_codec,
                        "note": "" if math.isfinite(anchor_rate) else
                        f"PSNR {p['psnr']:.2f} dB is outside the {a['label']} curve "
                        f"({min(a['psnr']):.2f}..{max(a['psnr']):.2f} dB)"})
    return bd, singles


def zoo_vqvae_models(like=None, *, manifest_path=None) -> list[str]:
    """Names of the zoo's VQ-VAEs (sorted), those with the input shape of ``like`` when it is given.

    One VQ-VAE is one rate point; the zoo's VQ-VAEs together (different code map sizes)
    make the rate-distortion curve.
    """
    from medzoo.zoo import list_models

    shape = None if like is None else tuple(resolve_model(like).image_shape)
    return sorted(m["name"] for m in list_models(manifest_path=manifest_path)
                  if m["family"] == "vqvae" and (shape is None or tuple(m["input_shape"]) == shape))
