"""How often each model's domain check flags the test images of each modality (own: rarely; others: nearly always).

    MEDZOO_DATA_DIR=DATA python benchmarks/domain.py

For every zoo model with a domain profile, the share of each test split's images that its
check would flag, the images going through the model's own preprocessing as files would
(a fixed-size model's resize included). The diagonal (a model's own data) should be near
the 0.5% its threshold allows; every other modality near 100% ("refused": the model's
preprocessing stops with an error first, as a CT model does on images that are not in
Hounsfield units). Needs no weights: the
profile and the preprocessing are in each preset's metadata.
"""

import _common
import numpy as np

#: test splits, one per modality and resolution the zoo knows
SPLITS = ("kermany_pediatric_cxr_128", "cxr_hannover_1024", "brain_tumor_figshare_128", "busbra_256", "hc18_256",
          "ct_tcia_512")


def flag_rate(profile, spec, images) -> float | None:
    """Share of ``images`` (an array, or a list of arrays of different sizes) that ``profile`` flags; None where
    the preprocessing itself refuses them (a CT model given images that are not in Hounsfield units)."""
    from medzoo.errors import DataError

    try:
        first = images[0] if isinstance(images, list) else images[:1]
        spec.apply(first)
    except DataError:
        return None
    if isinstance(images, list):
        return float(np.mean([profile.unfamiliar(np.asarray(spec.apply(a[None])))[0] for a in images]))
    return float(profile.unfamiliar(np.asarray(spec.apply(images))).mean())


def main(argv=None):
    from medzoo.data import PreprocessSpec
    from medzoo.evaluate.common import format_table
    from medzoo.models.domain import DomainProfile
    from medzoo.recipes.train import read_split
    from medzoo.zoo import info

    p = _common.parser("domain", __doc__.splitlines()[0])
    args = p.parse_args(argv)
    _common.setup_logging()
    tests = {}
    for split in SPLITS:
        images, _ = read_split(split, "test")
        if args.max_images:
            images = images[:args.max_images]
        tests[split] = images
    rows, data = [], {}
    for name in args.models or _common.zoo_names():
        entry = info(name)
        domain = (entry.get("training") or {}).get("domain")
        if not domain:
            continue
        profile = DomainProfile.from_dict(domain)
        spec = PreprocessSpec.from_config(entry["input"]["preprocess"])
        rates = {split: flag_rate(profile, spec, images) for split, images in tests.items()}
        data[name] = {"fitted_on": profile.fitted_on, "flagged": rates}
        rows.append([name, *("refused" if rates[s] is None else f"{rates[s]:.0%}" for s in SPLITS),
                     profile.fitted_on.replace(":train", "")])
    counts = ", ".join(f"{s} {len(tests[s])}" for s in SPLITS)
    text = format_table(["model", *SPLITS, "fitted on"], rows,
                        title=f"share of each test split flagged as unlike the model's training data ({counts} images)")
    print(text)
    _common.write(args.output, "summary", text, data)


if __name__ == "__main__":
    main()
