"""README.md and docs/: the zoo table agrees with weights_manifest.json, the Python examples run,
and every relative link points at a file that exists.

The Python examples are every fenced block whose info string is ``python``, run in
order in one namespace per page (a later block sees the variables of an earlier one) in a
temporary working directory, with ``MEDZOO_QUICK=1`` and a non-interactive
matplotlib backend. Tracebacks point at the page's line numbers. A block preceded
by the line ``<!-- readme-test: skip -->`` is shown but not run (keep that for
code that cannot run anywhere offline; prefer guarding it, e.g. with
``if os.environ.get("HF_TOKEN"):``).
"""

import pathlib
import re

import pytest

from medzoo.errors import ConfigError
from medzoo.zoo import table

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
PAGES = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
SKIP_MARKER = "<!-- readme-test: skip -->"
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([^\s`]*)")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, source)`` of every runnable ```python block, in order."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, language = match.groups()
        previous = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(fence[0] * len(fence))
                    and not lines[j].strip(fence[0]).strip()), len(lines))
        if language == "python" and previous != SKIP_MARKER:
            blocks.append((i + 2, "\n".join(lines[i + 1:end])))
        i = end + 1
    return blocks


def test_python_blocks_are_found_in_order_and_skippable():
    text = "\n".join([
        "# t", "```python", "a = 1", "```", "```bash", "echo no", "```", SKIP_MARKER, "",
        "```python", "raise SystemExit", "```", "````python", "b = a + 1", "```", "````",
    ])
    assert python_blocks(text) == [(3, "a = 1"), (14, "b = a + 1\n```")]


def test_the_zoo_table_matches_the_manifest():
    text = README.read_text(encoding="utf-8")
    try:
        current = table.current_block(text)
    except ConfigError as exc:
        pytest.fail(str(exc))
    assert current == table.block(), f"README.md's zoo table is stale; regenerate it with: {table.COMMAND}"


def test_the_zoo_table_renders_a_manifest(tmp_path):
    from medzoo.data import PreprocessSpec
    from medzoo.models import VAE, ConvAutoencoder
    from medzoo.zoo.manifest import add_to_manifest
    from medzoo.zoo.presets import save_preset

    spec = PreprocessSpec(size=(32, 32), resize="stretch")
    training = {"recipe": "test", "epochs": 1, "splits": {"train": "train"},
                "dataset": {"name": "kermany_pediatric_cxr_64", "licence": "CC-BY-4.0", "citation": "Kermany 2018"}}
    path = tmp_path / "weights_manifest.json"
    models = {
        "tiny-ae": (ConvAutoencoder(input_shape=(32, 32, 1), filters=4, depth=2, latent_channels=4, noise="gaussian",
                                    seed=0),
                    {"test_images": 8, "psnr": 30.123, "ssim": 0.91234, "mae": 0.01, "noisy_input_psnr": 20.0,
                     "denoised_psnr": 28.5}),
        "tiny-vae": (VAE(input_shape=(32, 32, 1), filters=4, depth=2, latent_dim=4, seed=0),
                     {"test": {"psnr": 25.0, "nelbo_bits_per_dim": 3.2}}),
    }
    for name, (model, metrics) in models.items():
        preset = save_preset(model, tmp_path / name, name=name, spec=spec, training=training, metrics=metrics,
                             licence="CC-BY-4.0")
        add_to_manifest(preset, manifest_path=path)
    rows = table.markdown_table(path).splitlines()
    assert rows[0] == "| model | family | modality | input | params | test metrics | licence |"
    assert rows[2].startswith("| `tiny-ae` | autoencoder (denoising) | chest X-ray (pediatric) | 32x32x1 | ")
    assert "| PSNR 30.12 dB, SSIM 0.912, denoised PSNR 28.50 dB (noisy input 20.00 dB) | CC-BY-4.0 |" in rows[2]
    assert rows[3].endswith("| PSNR 25.00 dB, NELBO 3.200 bits/dim | CC-BY-4.0 |") and len(rows) == 4

    import json

    data = json.loads(path.read_text())
    data["models"][1]["kept_because"] = "its flat latent | samples"  # why an outdone entry stays: under the table
    path.write_text(json.dumps(data))
    rows = table.markdown_table(path).splitlines()
    assert rows[4:] == ["", "Kept although a newer entry reconstructs better, each for what it still leads on:",
                        "- `tiny-vae`: its flat latent \\| samples"]

    readme = tmp_path / "README.md"
    readme.write_text(f"# demo\n\n{table.START}\nold\n{table.END}\n\nmore text\n")
    assert table.main(["--check", str(readme), "--manifest", str(path)]) == 1
    assert table.main(["--write", str(readme), "--manifest", str(path)]) == 0
    assert table.main(["--check", str(readme), "--manifest", str(path)]) == 0
    text = readme.read_text()
    assert text.startswith(f"# demo\n\n{table.START}\n{table.NOTE}\n| model |") and text.endswith(
        f"{table.END}\n\nmore text\n")
    assert table.render(text, path) == text  # idempotent
    with pytest.raises(ConfigError, match="zoo-table:start"):
        table.render("no markers here", path)


def test_a_prior_judged_on_several_datasets_shows_each_dataset_s_figures_apart():
    """A generalist prior's figures are per dataset: the table gives each set's distance and fidelity, no mean."""
    each = {"kermany_pediatric_cxr_128": {"feature_fd": {"prior": 1.07, "vae_normal": 26.01, "real_train": 0.43},
                                          "label_fidelity": 0.988},
            "brain_tumor_figshare_128": {"feature_fd": {"prior": 1.93, "vae_normal": 25.92, "real_train": 2.05},
                                         "label_fidelity": 0.799}}
    text = table._metrics({"per_dataset": each})
    assert text == ("chest X-ray (pediatric): feature Fréchet distance 1.07 (the VAE's N(0, I) 26.01, real images "
                    "0.43), label fidelity 0.988; brain MRI (T1-CE): feature Fréchet distance 1.93 (the VAE's N(0, I) "
                    "25.92, real images 2.05), label fidelity 0.799")
    assert table._metrics({"per_dataset": {"hc18_256": {"images_per_second": 3.0}}}) == "—"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_python_examples_run(page, tmp_path, monkeypatch):
    """Each page's examples in order; the README's as on a fresh install, with no data folder."""
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    if page == README:
        assert blocks, "README.md has no ```python examples"
        monkeypatch.setenv("MEDZOO_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDZOO_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__readme__"}
    for line, source in blocks:
        code = compile("\n" * (line - 1) + source, str(page), "exec")  # tracebacks name the page's lines
        exec(code, namespace)  # noqa: S102  (the documentation's own examples)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_point_at_files_that_exist(page):
    text = page.read_text(encoding="utf-8")
    targets = [t.split("#")[0] for t in LINK.findall(text) if "://" not in t and not t.startswith(("#", "mailto:"))]
    missing = [t for t in targets if t and not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_ci_runs_the_readme_test_command_verbatim():
    """.ci/run installs and then runs the README's test command; the two must not drift apart."""
    readme = README.read_text(encoding="utf-8")
    command = next(line for line in readme.splitlines() if line.startswith("python3 -m venv") and "[test]" in line)
    pytest_command = command[command.index("python -m pytest"):]
    ci_lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert pytest_command in ci_lines


def _shell_commands(text: str) -> list[tuple[str, list[str]]]:
    """``(page line, argv)`` of every ``medzoo ...`` line in the page's ```bash blocks (comments dropped,
    backslash continuations joined)."""
    import shlex

    commands, inside, pending = [], False, ""
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match:
            inside = not inside and match.group(2) == "bash"
            continue
        if not inside:
            continue
        pending += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if line.rstrip().endswith("\\"):
            continue
        words, pending = shlex.split(pending, comments=True), ""
        while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value prefixes
            words = words[1:]
        if words and words[0] == "medzoo":
            commands.append((number, words[1:]))
    return commands


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_shell_examples_name_real_commands_flags_and_models(page):
    """Every ``medzoo`` command line shown parses with the real CLI, and every model it names is in the
    zoo (or is a recipe, for ``medzoo train``): a renamed flag or a retired name fails here."""
    import medzoo
    from medzoo.cli import build_parser
    from medzoo.recipes import RECIPES

    parser = build_parser()
    zoo = {m["name"] for m in medzoo.list_models()}
    for line, argv in _shell_commands(page.read_text(encoding="utf-8")):
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{page.name}:{line}: `medzoo {' '.join(argv)}` does not parse")
        names = [getattr(args, "model", None), getattr(args, "recipe", None), *(getattr(args, "models", None) or []),
                 *(getattr(args, "items", None) or [])[:1]]
        for name in filter(None, names):
            if isinstance(name, str) and not any(c in name for c in "/.") and "-" in name:
                known = RECIPES if args.command == "train" else zoo
                assert name in known, f"{page.name}:{line}: `medzoo {' '.join(argv)}` names unknown {name!r}"
