"""The model card (``README.md``) of a preset: Hugging Face front matter plus a human summary.

The front matter (``library_name: keras``, licence, tags, datasets, metrics) is
what the Hub indexes; the body states what the model is, what input it expects,
what it was trained on and, above all, what it must not be used for.
"""

from __future__ import annotations

from medzoo.data import PreprocessSpec

FAMILY_TAGS = {"autoencoder": ["autoencoder"], "vae": ["autoencoder", "vae"], "vqvae": ["autoencoder", "vq-vae"],
               "codec": ["image-compression", "vae", "hyperprior"],
               "segmenter": ["image-segmentation", "u-net"],
               "prior": ["unconditional-image-generation", "flow-matching", "latent-diffusion"]}

_LIMITS = """\
## Intended use and limitations

- **Research and education only. This is not a medical device**: it is not cleared or
  approved by any regulator, was not clinically validated, and must not be used for
  diagnosis, triage, treatment or any other clinical decision.
- It was trained on one dataset (see Training data); expect it to degrade on other
  scanners, sites, protocols, populations and anatomies. Images unlike the training data
  are reconstructed worse, which is what anomaly scores build on, and also why they mislead.
- Reconstructions are smooth approximations. Fine detail (small lesions, lines, text)
  can be lost or invented; never read a reconstruction as the original image.
- Inputs must follow the preprocessing above; the model refuses arrays that contradict it
  unless you ask it to preprocess (`reconstruct(raw, preprocess=True)`).
"""


#: metrics a card shows in tables of their own, not in the flat metric list
_OWN_TABLES = ("qualities", "levels_below_jpeg2000", "high_bit_depth")


def _high_bit_depth_section(rows) -> list[str]:
    """A lossy coder's figures on 10-16-bit images beside JPEG 2000 (``benchmarks/high_bit_depth.py``)."""
    if not isinstance(rows, dict) or not rows:
        return []
    lines = ["", "## On 10-16-bit images", "",
             "Trained on 8-bit images; coded from the stored pixels of these 10-16-bit images, PSNR over each "
             "image's stored range, beside JPEG 2000 at the same bytes (`benchmarks/high_bit_depth.py`). Where "
             "JPEG 2000 wins, `medzoo compress` warns on such inputs and points at lossless coding.", "",
             "| image | bits stored | level | bpp | PSNR | MS-SSIM | JPEG 2000 PSNR | JPEG 2000 MS-SSIM |",
             "|---|---|---|---|---|---|---|---|"]
    for label, row in rows.items():
        lines.append(f"| {label} | {row.get('bits')} | {row.get('quality')} | {row.get('bpp', 0):.3f} | "
                     f"{row.get('psnr', 0):.2f} | {row.get('ms_ssim', 0):.4f} | {row.get('jpeg2000_psnr', 0):.2f} | "
                     f"{row.get('jpeg2000_ms_ssim', 0):.4f} |")
    return lines


def _flat_metrics(metrics: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for key, value in (metrics or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flat_metrics(value, f"{name}/"))
        else:
            rows.append((name, value))
    return rows


def _bullets(data: dict, depth: int = 0) -> list[str]:
    """Nested dicts as a Markdown bullet list."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines += [f"{'  ' * depth}- {key}:", *_bullets(value, depth + 1)]
        else:
            lines.append(f"{'  ' * depth}- {key}: {value}")
    return lines


def _front_matter(metadata: dict) -> str:
    from huggingface_hub import ModelCardData

    dataset = (metadata.get("training") or {}).get("dataset")
    if isinstance(dataset, dict):
        dataset = dataset.get("name")
    data = ModelCardData(
        library_name="keras",
        license=str(metadata["licence"]).lower(),
        tags=["medzoo", "medical-imaging", *FAMILY_TAGS[metadata["family"]]],
        datasets=[str(dataset)] if dataset else None,
        metrics=sorted({name.split("/")[-1] for name, _ in _flat_metrics(metadata.get("metrics"))}) or None,
    )
    return f"---\n{data.to_yaml()}\n---\n"


def input_label(shape) -> str:
    """An input shape for people: ``128x128x1``, or ``any x 1`` for an any-size model (``[null, null, 1]``)."""
    shape = list(shape)
    if shape[0] is None:
        return f"any x {shape[-1]}"
    return "x".join(map(str, shape))


def geometry_label(spec: dict) -> str:
    """What a preprocessing spec config does to the image size, in words."""
    if spec.get("size") is None:
        limit = spec.get("max_side")
        return "native size" + (f" (longer side at most {limit})" if limit else "")
    return f"resize ({spec.get('resize')}) to {'x'.join(map(str, spec['size']))}"


def _prior_usage(name: str, metadata: dict) -> list[str]:
    """A latent prior's usage: it generates (and varies) images; its autoencoder loads with it."""
    training = metadata.get("training") or {}
    labels = training.get("labels") or []
    autoencoder = (training.get("autoencoder") or {}).get("name", "its autoencoder")
    first = repr(labels[-1]) if labels else "None"
    return [
        "```python",
        "import medzoo",
        "",
        f'prior = medzoo.load("{name}")        # loads {autoencoder} too (its decoder makes the images)',
        f"images = prior.generate(16, label={first}, seed=0)   # labels: {', '.join(labels) or 'none'}",
        "more = prior.vary(real_images, strength=0.5, seed=0)  # variations of given images",
        "```",
        "",
        f"`medzoo generate {name} -n 16 --label ... -o DIR` writes PNGs (or DICOM Secondary Capture marked "
        "synthetic, with `--dicom`) and a contact sheet. Synthetic images carry no diagnosis.",
        "",
    ]


def render_card(metadata: dict) -> str:
    """The README.md text for a preset, from its metadata (see ``presets.save_preset``)."""
    name = metadata["name"]
    inputs = metadata["input"]
    shape = input_label(inputs["shape"])
    size_note = " (any height and width; large images go through overlapping tiles)" if inputs["shape"][0] is None \
        else ""
    low, high = inputs["value_range"]
    lines = [
        _front_matter(metadata),
        f"# {name}",
        "",
        metadata.get("description") or f"A medzoo {metadata['family']} model.",
        "",
        f"- family: `{metadata['family']}` (`{metadata['class_name']}`), {metadata['parameters']:,} parameters",
        f"- version {metadata['version']}, weights licence {metadata['licence']}, "
        f"weights stored as {metadata['weights']['dtype']} (loaded as float32)",
        f"- made with medzoo {metadata['medzoo_version']} and Keras {metadata['keras_version']}",
        "",
        "## Usage",
        "",
        *(_prior_usage(name, metadata) if metadata["family"] == "prior" else [
            "```python",
            "import medzoo",
            "",
            f'model = medzoo.load("{name}")',
            "x = model.preprocess(raw_images)      # resize + normalise with the spec below",
            "recon = model.reconstruct(x)          # or model.reconstruct(raw_images, preprocess=True)",
            "codes = model.encode(x)",
            "```",
            ""]),
        "## Input",
        "",
        f"Images of shape {shape}{size_note} with values in [{low:g}, {high:g}], made from raw images by this "
        "preprocessing (`model.preprocess_spec`, applied by `model.preprocess`):",
        "",
        "```python",
        repr(PreprocessSpec.from_config(inputs["preprocess"])),
        "```",
        "",
        "## Training data",
        "",
    ]
    training = dict(metadata.get("training") or {})
    domain = training.pop("domain", None)  # numbers for the model, not for readers: summarised below
    if isinstance(domain, dict):
        training["domain check"] = (f"images whose intensity and texture statistics lie beyond the 99.5th percentile "
                                    f"of the validation images' (Mahalanobis distance {domain.get('threshold')}) "
                                    f"from {domain.get('fitted_on') or 'the training images'} get a warning")
    if training:
        lines += _bullets(training)
    else:
        lines.append("Not recorded.")
    lines += ["", "## Metrics", ""]
    metrics = metadata.get("metrics") or {}
    per_dataset = metrics.get("per_dataset")
    if isinstance(per_dataset, dict) and len(per_dataset) > 1:  # the top-level figures are a mean of means
        lines += [f"The figures without a dataset are the mean of the {len(per_dataset)} datasets' own means (each "
                  "an equal share; `test_images` is their sum), not a mean over images; `per_dataset/` gives "
                  "each dataset's.", ""]
    rows = _flat_metrics({k: v for k, v in metrics.items() if k not in _OWN_TABLES})
    if rows:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value:.6g} |" if isinstance(value, float) else f"| {key} | {value} |"
                  for key, value in rows]
    else:
        lines.append("Not recorded.")
    lines += _codec_section(metadata)
    lines += _high_bit_depth_section(metrics.get("high_bit_depth"))
    lines += ["", _LIMITS]
    return "\n".join(lines)


def _codec_section(metadata: dict) -> list[str]:
    """A codec's quality levels (a hyperprior's lambdas, a rate-trained autoencoder's latent steps), or what a
    VQ-VAE preset's ``entropy_model.npz`` is."""
    qualities = (metadata.get("metrics") or {}).get("qualities")
    if isinstance(qualities, dict) and qualities:
        rows = sorted(qualities.items(), key=lambda kv: int(kv[0]))
        stepped = "step" in rows[0][1]
        judged = "jpeg2000_psnr" in rows[0][1]  # a shipped codec: the benchmark's rows, beside JPEG 2000

        def cell(row, key, digits):
            value = row.get(key)
            return "-" if value is None else f"{value:.{digits}f}"

        lines = ["", "## Quality levels", "",
                 "Each test image coded in a stream of its own (header included) and decoded back"
                 + (" (coded at 1/factor of its size per side, enlarged back after decoding)" if stepped else "")
                 + (", beside JPEG 2000 at the same bits per pixel (`benchmarks/codec_comparison.py`); the "
                    "levels offered are those at or above it" if judged else "") + ":", "",
                 f"| quality | {'factor | latent step' if stepped else 'lambda'} | bits per pixel |"
                 + (" ratio of 8 bits |" if judged else "") + " PSNR (dB) | SSIM |"
                 + (" MS-SSIM | JPEG 2000 PSNR | JPEG 2000 MS-SSIM |" if judged else ""),
                 "|---|---|---|---|---|" + ("---|" if stepped else "") + ("---|---|---|---|" if judged else "")]
        for q, row in rows:
            lines.append(f"| {q} | {str(row.get('factor', 1)) + ' | ' if stepped else ''}"
                         f"{row.get('step' if stepped else 'lambda', float('nan')):.4g} | {cell(row, 'bpp', 3)} |"
                         + (f" {8 / row['bpp']:.1f}:1 |" if judged and row.get("bpp") else "")
                         + f" {cell(row, 'psnr', 2)} | {cell(row, 'ssim', 4)} |"
                         + (f" {cell(row, 'ms_ssim', 4)} | {cell(row, 'jpeg2000_psnr', 2)} |"
                            f" {cell(row, 'jpeg2000_ms_ssim', 4)} |" if judged else ""))
        below = (metadata.get("metrics") or {}).get("levels_below_jpeg2000") or {}
        if below:
            lines += ["", f"Levels {', '.join(sorted(below, key=int))} decode too, but JPEG 2000 codes the test "
                          "split better at their bits per pixel: they are not offered."]
        example = f'stream = medzoo.compress(pixels, model="{metadata["name"]}", quality={rows[len(rows) // 2][0]})'
        lines += ["", "```python", example, "pixels_back = medzoo.decompress(stream)   # same dtype and shape", "```"]
        if judged:
            lines += ["", f"On the command line, by compression ratio of the stored bits: `medzoo compress "
                          f"{metadata['name']} scan.dcm -o scan.mzc --ratio 30` takes the offered level nearest "
                          "30:1 and prints the ratio it got."]
        return lines
    codec = metadata.get("entropy_model")
    if not isinstance(codec, dict):
        return []
    fitted = codec.get("fitted_on") or {}
    rates = codec.get("val_bits_per_code") or codec.get("train_bits_per_code") or {}
    pixels = codec.get("pixels_per_code")
    lines = ["", "## Compression", "",
             f"`{codec.get('file', 'entropy_model.npz')}` is the probability model that `medzoo.compress` "
             f"range-codes this model's code maps with: code counts from split {fitted.get('counts', 'train')!r} "
             f"of {fitted.get('dataset') or 'the training data'}, mixture weights fitted on split "
             f"{fitted.get('weights', 'val')!r}. It is part of the codec: a stream records its digest "
             f"({str(codec.get('digest', ''))[:8]}) and decodes only with it, so compressing and decompressing "
             "need no data."]
    if rates:
        split = "validation" if codec.get("val_bits_per_code") else "training"
        lines += ["", f"| entropy model | bits per code ({split}) |" + (" bits per pixel |" if pixels else ""),
                  "|---|---|" + ("---|" if pixels else "")]
        lines += [f"| {kind} | {bits:.4g} |" + (f" {bits / pixels:.4g} |" if pixels else "")
                  for kind, bits in rates.items() if isinstance(bits, (int, float))]
    lines += ["", "```python", f'stream = medzoo.compress(raw_images, model="{metadata["name"]}")  # bytes',
              "images = medzoo.decompress(stream)", "```"]
    return lines
