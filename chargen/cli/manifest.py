"""A music sample's manifest: everything needed to generate the same file again.

Beside every music sample `chargen sample` writes, a small JSON file names the
checkpoint (path and SHA-256), the seed, every generation option, and which
sample of the batch it is (the samples of one call share one random stream, so
sample 2 of 4 comes back only from a call for 4):

    samples/sample-20261123-140000-2.mid
    samples/sample-20261123-140000-2.mid.json

`chargen sample --from-manifest samples/sample-20261123-140000-2.mid.json`
regenerates exactly that file, on the same device and precision.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from chargen import __version__
from chargen.atomic import atomic_write
from chargen.data.cache import (
    file_fingerprint,  # SHA-256 of a file's bytes, as a corpus's cache entry records
)
from chargen.errors import ChargenError

FORMAT = "chargen-sample-manifest"
FORMAT_VERSION = 1
SUFFIX = ".json"  # appended to the sample's own name: take.mid -> take.mid.json
# The Model.generate() arguments a manifest records; with the checkpoint they determine the file.
OPTIONS = ("prime", "prime_seconds", "length", "seconds", "temperature", "top_k", "top_p", "seed", "n",
           "tempo", "program", "include_prime")


def manifest_path(sample: os.PathLike | str) -> Path:
    """Where the manifest of a sample file lives: beside it, its name plus .json."""
    sample = Path(sample)
    return sample.with_name(sample.name + SUFFIX)


def build(checkpoint: Path, digest: str, options: dict, index: int, device: str, precision: str) -> dict:
    """The manifest of sample `index` (1-based) of a call to generate() with `options`."""
    missing = [name for name in OPTIONS if name not in options]
    assert not missing, f"manifest options lack {missing}"
    options = {name: options[name] for name in OPTIONS}
    prime_digest = None
    if options["prime"]:
        options["prime"] = os.path.abspath(options["prime"])
        prime_digest = file_fingerprint(options["prime"])
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "chargen_version": __version__,
            "checkpoint": str(Path(checkpoint).resolve()), "checkpoint_sha256": digest,
            "prime_sha256": prime_digest, "device": device, "precision": precision, "sample": index,
            "options": options}


def write(sample: Path, manifest: dict) -> Path:
    """Write the manifest beside `sample`, atomically; ChargenError in one line if it cannot be written."""
    path = manifest_path(sample)
    try:
        with atomic_write(path, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
    except OSError as e:
        raise ChargenError(f"could not write {path}: {e.strerror or e}") from e
    return path


def read(path: os.PathLike | str) -> dict:
    """A manifest as written by write(), checked; ChargenError saying what is wrong with it."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ChargenError(f"{path}: cannot read manifest: {e.strerror or e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ChargenError(f"{path}: not a chargen sample manifest (not JSON)") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ChargenError(f"{path}: not a chargen sample manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ChargenError(f"{path}: manifest version {manifest.get('format_version')} is not supported "
                           f"(this chargen reads version {FORMAT_VERSION})")
    options = manifest.get("options")
    if (not isinstance(options, dict) or set(options) != set(OPTIONS) or not isinstance(options.get("n"), int)
            or not isinstance(manifest.get("sample"), int) or not 1 <= manifest["sample"] <= options["n"]):
        raise ChargenError(f"{path}: the manifest is damaged (its options or sample number are missing)")
    return manifest


def check_sources(manifest: dict, checkpoint: Path, path: os.PathLike | str) -> None:
    """ChargenError unless `checkpoint` and the prime are the files the sample came from (SHA-256):
    with others, the same seed gives other music."""
    if file_fingerprint(checkpoint) != manifest.get("checkpoint_sha256"):
        raise ChargenError(f"{path}: {checkpoint} is not the checkpoint this sample came from (its SHA-256 "
                           "differs); the same seed would give other music")
    prime = manifest["options"]["prime"]
    if prime and (not os.path.isfile(prime) or file_fingerprint(prime) != manifest.get("prime_sha256")):
        raise ChargenError(f"{path}: the prime {prime} is gone or changed since the sample was written")
