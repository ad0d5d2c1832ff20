"""Give zoo presets that lack one a domain profile, the check that warns on images of another modality.

The any-size recipes fit a profile when they write a preset; the older fixed-size chest
X-ray models (``ae-chestxray``, ``vae-chestxray``, the ``-normal`` and VQ-VAE variants)
were written before, so they warned about nothing, a brain MRI included. This fits each
one's profile exactly as training does (:func:`medzoo.recipes.train.domain_profile`: its
recipe's training images through its own preprocessing, the threshold from the validation
split), records it in the preset's metadata (the weights are untouched and re-verified) and
refreshes the manifest entry.

    MEDZOO_DATA_DIR=DATA python tools/fit_domain_profiles.py            # every preset without one
    MEDZOO_DATA_DIR=DATA python tools/fit_domain_profiles.py vae-chestxray
"""

import argparse
import json
import pathlib

PRESETS = pathlib.Path(__file__).resolve().parent.parent / "presets"


def without_profile() -> list[str]:
    """Presets that take images and carry no domain profile (a latent prior takes none)."""
    names = []
    for path in sorted(PRESETS.glob("*/metadata.json")):
        metadata = json.loads(path.read_text())
        if metadata["family"] != "prior" and not (metadata.get("training") or {}).get("domain"):
            names.append(path.parent.name)
    return names


def fit(name: str) -> dict:
    from medzoo.recipes import get_recipe
    from medzoo.recipes.train import domain_profile, load_images
    from medzoo.zoo.manifest import add_to_manifest, read_manifest
    from medzoo.zoo.presets import load_preset, read_metadata, update_preset

    folder = PRESETS / name
    metadata = read_metadata(folder)
    recipe = get_recipe(metadata["training"]["recipe"])
    spec = load_preset(folder, compile=False).preprocess_spec

    def as_list(images):
        return images if isinstance(images, list) else [images]

    profile = domain_profile(recipe, spec, as_list(load_images(recipe, "train")), as_list(load_images(recipe, "val")))
    update_preset(folder, training={**metadata["training"], "domain": profile.to_dict()})
    bundled = any(e["name"] == name and e["sources"]["bundled"] for e in read_manifest()["models"])
    add_to_manifest(folder, bundle=bundled)
    return profile.to_dict()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="presets (default: every one without a profile)")
    args = p.parse_args(argv)
    for name in args.names or without_profile():
        profile = fit(name)
        print(f"{name}: profile fitted on {profile['fitted_on']}, threshold {profile['threshold']}")


if __name__ == "__main__":
    main()
