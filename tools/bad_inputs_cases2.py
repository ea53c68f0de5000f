"""Round two of tools/bad_inputs.py (issue 24): data loss, tracebacks, silent misreads,
memory and messages. Each case names what a good answer must contain."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

from bad_inputs_cases import OK, SKIP, Case, absent, unchanged


def data_loss(p: SimpleNamespace) -> list[Case]:
    """--overwrite never replaces anything but a run; export never writes into a run."""
    r, good, run = p.root, str(p.good), str(p.run)
    data, parent = p.parent / "data", p.parent
    keep = unchanged(p.parent)
    reads = "which this command reads"
    cases = [
        Case("fit: --out DATA --overwrite", ["fit", str(data), "--out", str(data),
                                             "--overwrite", "--backbone", "pixels"],
             needle=reads, check=keep),
        Case("fit: --out a parent of DATA --overwrite", [
            "fit", str(data), "--out", str(parent), "--overwrite", "--backbone", "pixels"],
            needle=reads, check=keep),
        Case("evaluate: --out DATA --overwrite", ["evaluate", run, str(data), "--out",
                                                  str(data), "--overwrite"], needle=reads,
             check=keep),
        Case("evaluate: --out the run read --overwrite", [
            "evaluate", run, good, "--out", run, "--overwrite"], needle=reads,
            check=unchanged(p.run)),
        Case("fit: --overwrite a folder of user files", [
            "fit", good, "--out", str(p.user_dir), "--overwrite", "--backbone", "pixels"],
            needle="not a transferkit run directory", check=unchanged(p.user_dir)),
        Case("fit: --overwrite a run holding notes.txt", [
            "fit", good, "--out", str(p.notes_run), "--overwrite", "--backbone", "pixels"],
            needle="notes.txt", check=unchanged(p.notes_run)),
        Case("fit: --overwrite a file", ["fit", good, "--out", str(p.a_file), "--overwrite",
                                         "--backbone", "pixels"], needle="a file",
             check=unchanged(p.a_file)),
        Case("fit: --overwrite with user files in <out>.partial", [
            "fit", good, "--out", str(p.partial_owner), "--overwrite", "--backbone",
            "pixels"], needle="victim.partial", check=unchanged(r / "victim.partial")),
        Case("export --onnx RUN/model.safetensors", [
            "export", run, "--onnx", str(p.run / "model.safetensors"), "--overwrite"],
            needle="inside the run directory", check=unchanged(p.run)),
        Case("export --onnx an existing file", ["export", run, "--onnx", str(p.important)],
             needle="already exists; pass --overwrite", check=unchanged(p.important)),
        Case("export --onnx a directory", ["export", run, "--onnx", str(p.empty_dir)],
             needle="is a directory"),
        Case("a fit that fails early leaves nothing", [
            "fit", str(p.corrupt), "--out", str(r / "early"), "--backbone", "pixels"],
            needle="x.png", check=absent(r / "early")),
        Case("resume: a directory that does not exist", ["fit", "--resume", str(r / "gone")],
             needle="gone: no such run directory"),
        Case("resume: --out given too", ["fit", "--resume", run, "--out", str(r / "x")],
             needle="--out"),
    ]
    return cases + _every_command(p, keep, reads)


def _every_command(p: SimpleNamespace, keep: Callable[[], str | None], reads: str
                   ) -> list[Case]:
    """--out DATA --overwrite in each command that writes a folder."""
    good, data = str(p.good), p.parent / "data"
    cases = []
    for cmd, extra in (("compare", ["--rungs", "frozen"]),
                       ("zeroshot", ["--unseen", "sneaker", "--classes", str(p.desc_ok),
                                     "--backbone", "pixels"]),
                       ("fewshot", ["--ways", "2", "--backbone", "pixels"]),
                       ("auto", ["--backbones", "efficientnet_lite0"]),
                       ("demo", [])):
        argv = [cmd, *([] if cmd == "demo" else [str(data)]), "--out", str(data),
                "--overwrite", *extra]
        need = "not a transferkit run directory" if cmd == "demo" else reads
        cases.append(Case(f"{cmd}: --out DATA --overwrite", argv, needle=need, check=keep))
    cases += [
        Case("multitask: --out a task's DATA --overwrite", [
            "multitask", "--task", f"a={data}", "--task", f"b={data}", "--backbone", "pixels",
            "--out", str(data), "--overwrite"], needle=reads, check=keep),
        Case("adapt: --out TARGET --overwrite", [
            "adapt", good, str(data), "--backbone", "lenet", "--out", str(data),
            "--overwrite"], needle=reads, check=keep),
    ]
    return cases


def tracebacks(p: SimpleNamespace) -> list[Case]:
    """Image data with a text backbone, in every command; multitask with tiny data."""
    r, good = p.root, str(p.good)
    msg = "image data, but backbone 'minilm' reads text"
    return [
        Case("multitask: 8 images per class, 1 epoch", [
            "multitask", "--task", f"a={p.tiny}", "--task", f"b={p.tiny}", "--backbone",
            "cnn", "--image-size", "16", "--epochs", "1", "--out", str(r / "mt")], OK),
        Case("rank: images with a text backbone", ["rank", good, "--backbones", "minilm"],
             needle=msg),
        Case("fewshot: images with a text backbone", [
            "fewshot", good, "--backbone", "minilm", "--ways", "2", "--out", str(r / "f2")],
            needle=msg),
        Case("zeroshot: images with a text backbone", [
            "zeroshot", good, "--unseen", "sneaker", "--classes", str(p.desc_ok),
            "--backbone", "minilm", "--out", str(r / "z3")], needle=msg),
        Case("auto: images with a text backbone", ["auto", good, "--backbones", "minilm",
                                                   "--out", str(r / "au1")], needle=msg),
        Case("fit: images with a text backbone", ["fit", good, "--backbone", "minilm",
                                                  "--out", str(r / "o20")], needle=msg),
        Case("evaluate: an image run on text", ["evaluate", str(p.run), str(p.texts),
                                                "--out", str(r / "e2")],
             needle="this run's backbone 'pixels' reads image"),
        Case("fewshot: text data with an image backbone", [
            "fewshot", str(p.texts), "--backbone", "pixels", "--ways", "2", "--out",
            str(r / "f3")], needle="text data, but backbone 'pixels' reads image"),
        Case("rank: audio with an image backbone", ["rank", str(p.wav), "--backbones",
                                                    "pixels"],
             needle="audio data, but backbone 'pixels' reads image"),
    ]


def misreads(p: SimpleNamespace) -> list[Case]:
    """Odd input is read as the majority says and every left-out item is named."""
    r, good = p.root, str(p.good)
    return [
        Case("images plus a README.txt per class", ["fit", str(p.mixed), "--out",
                                                    str(r / "o21"), "--backbone", "pixels"],
             SKIP, needle="ignored 3 text file(s)"),
        Case("as many texts as images", ["fit", str(p.tie), "--out", str(r / "o22")],
             needle="as many image files as text files"),
        Case("truncated WAV", ["fit", str(p.wav_trunc), "--out", str(r / "o23"),
                               "--backbone", "logmel"], needle="cut.wav: truncated WAV"),
        Case("truncated WAV with --skip-bad", ["fit", str(p.wav_trunc), "--out",
                                               str(r / "o24"), "--backbone", "logmel",
                                               "--skip-bad"], SKIP, needle="skipped"),
        Case("a broken symlink", ["fit", str(p.links), "--out", str(r / "o25"), "--backbone",
                                  "pixels"], SKIP, needle="1 broken symbolic link(s) skipped"),
        Case("zeroshot --unseen with a typo", [
            "zeroshot", good, "--unseen", "sneakr", "--classes", str(p.desc_ok),
            "--backbone", "pixels", "--out", str(r / "z4")], needle="did you mean 'sneaker'",
            check=absent(r / "z4")),
        Case("the same image in two classes", ["fit", str(p.dups), "--out", str(r / "o26"),
                                               "--backbone", "pixels"], SKIP,
             needle="appear under two classes"),
        Case("test texts duplicated in training", [
            "fit", str(p.dup_train), "--test", str(p.dup_test), "--backbone", "bow", "--out",
            str(r / "o27")], SKIP, needle="also in the training data"),
        Case("a text class whose texts are all empty (CSV)", [
            "fit", str(p.empty_class_csv), "--backbone", "bow", "--out", str(r / "o28")],
            SKIP, needle="class 'ghost' left out"),
        Case("a text class whose files are all empty (folder)", [
            "fit", str(p.text_folder), "--backbone", "bow", "--out", str(r / "o29")], SKIP,
            needle="every one empty"),
        Case("--val with --val-fraction", ["fit", good, "--val", good, "--val-fraction", "0.2",
                                           "--out", str(r / "o30")],
             needle="--val and --val-fraction exclude"),
        Case("--test with --test-fraction", ["fit", good, "--test", good, "--test-fraction",
                                             "0.3", "--out", str(r / "o31")],
             needle="--test and --test-fraction exclude"),
        Case("--head knn --C 5", ["fit", good, "--head", "knn", "--C", "5", "--backbone",
                                  "pixels", "--out", str(r / "o32")], needle="knn head"),
        Case("-o head=knn -o C=5", ["fit", good, "-o", "head=knn", "-o", "C=5", "--backbone",
                                    "pixels", "--out", str(r / "o33")], needle="knn head"),
        Case("fewshot --epochs with protonet", ["fewshot", good, "--ways", "2", "--epochs",
                                                "3", "--backbone", "pixels", "--out",
                                                str(r / "f4")], needle="--epochs is not used"),
        Case("fewshot --finetune-episodes without finetune", [
            "fewshot", good, "--ways", "2", "--finetune-episodes", "5", "--backbone", "pixels",
            "--out", str(r / "f5")], needle="--finetune-episodes is not used"),
        Case("fewshot --base, --queries 2 (meta)", [
            "fewshot", good, "--base", str(p.base), "--method", "fomaml", "--ways", "2",
            "--queries", "2", "--episodes", "20", "--epochs", "1", "--backbone", "pixels",
            "--out", str(r / "f6")], OK),
    ]


def messages(p: SimpleNamespace) -> list[Case]:
    """Options validated before work; user strings verbatim; hints name real options."""
    r, good, run = p.root, str(p.good), str(p.run)
    return [
        Case("a class folder named :thumbs_up:", ["fit", str(p.emoji), "--out",
                                                  str(r / "o34"), "--backbone", "pixels"],
             OK),
        Case("predict prints :thumbs_up: verbatim", [
            "predict", str(r / "o34"), *map(str, sorted((p.emoji / ":thumbs_up:").glob(
                "*.png"))[:2])], OK, needle=":thumbs_up:", absent="\U0001f44d"),
        Case("zeroshot --classes /etc/passwd", [
            "zeroshot", good, "--unseen", "sneaker", "--classes", "/etc/passwd", "--backbone",
            "pixels", "--out", str(r / "z5")], needle="root:x:0:0", absent="\u274c"),
        Case("predict: a corrupt image (no --skip-bad to suggest)", [
            "predict", run, str(p.bad_png)], needle="bad.png"),
        Case("rank: a corrupt image (no --skip-bad to suggest)", [
            "rank", str(p.corrupt), "--backbones", "pixels"], needle="x.png"),
        Case("export: unwritable (no --out to suggest)", [
            "export", run, "--onnx", "/proc/tk2.onnx"], needle="choose another path"),
        Case("--seed -1", ["fit", good, "--seed", "-1", "--out", str(r / "o35")],
             needle="--seed"),
        Case("adapt --seed -1", ["adapt", good, good, "--seed", "-1", "--out", str(r / "a3")],
             needle="--seed"),
        Case("rank --stages 99", ["rank", good, "--backbones", "cnn", "--stages", "99"],
             needle="has 4 stages"),
        Case("rank --stages -1", ["rank", good, "--backbones", "cnn", "--stages", "-1"],
             needle="got -1"),
        Case("rank --stages x", ["rank", good, "--backbones", "cnn", "--stages", "x"],
             needle="--stages"),
        Case("rank --stages on a backbone without stages", [
            "rank", good, "--backbones", "pixels", "--stages", "2"], needle="cannot be cut"),
        Case("compare --scratch-epochs -3", ["compare", good, "--out", str(r / "c2"),
                                             "--scratch-epochs", "-3"],
             needle="--scratch-epochs"),
        Case("compare --epochs 0", ["compare", good, "--out", str(r / "c3"), "--epochs", "0"],
             needle="--epochs"),
        Case("config.json: input_size 100000 x 100000", [
            "predict", str(p.huge_cfg), str(p.img)], needle="input_size"),
        Case("config.json: pixels size -5", ["predict", str(p.neg_size_cfg), str(p.img)],
             needle="backbone.size = -5"),
        Case("config.json: num_classes 0", ["predict", str(p.zero_classes_cfg), str(p.img)],
             needle="num_classes"),
        Case("--version", ["--version"], OK, needle="transferkit "),
        Case("predict: 1 x 20000 PNG (peak memory)", ["predict", str(p.lite), str(p.tall)],
             OK, needle="tall.png", max_mb=1536),
        Case("predict: 20000 x 1 PNG (peak memory)", ["predict", str(p.lite), str(p.wide)],
             OK, needle="wide.png", max_mb=1536),
        Case("fit: one 10-minute WAV among 1 s clips (peak memory)", [
            "fit", str(p.wav_long), "--backbone", "speech_embedding", "--out",
            str(r / "o36")], OK, max_mb=1536),
    ]
