"""What follows fine-tuning: the probe guard (the model is the linear probe when
fine-tuning does not beat it on the validation data) and the refit on all the data for the
epochs the held-out data picked."""

from __future__ import annotations

from typing import Any

from sklearn.base import clone

from transferkit.data.dataset import Dataset
from transferkit.model import TransferModel
from transferkit.train.trunk import fresh_backbone


class AfterFineTuning:
    """The guard and the refit of :class:`~transferkit.strategies.finetune.FineTuneClassifier`
    (its parameters and fitted attributes)."""

    advice_: str | None
    probe_val_score_: float | None
    wise_alpha_: float | None
    log: Any

    def _after_fit(self, train: Dataset, val: Dataset | None, full: Dataset | None, *,
                   fallback: str, refit: bool | str | None, probe_init: bool) -> None:
        """Say when the start beat every fine-tuned epoch; apply the probe guard or the
        refit (``full``: all the data, when the validation data was held out of it)."""
        self.advice_ = None
        self.probe_val_score_ = None
        if self.best_epoch_ == 0:  # type: ignore[attr-defined]  # the start beat every epoch
            start = "the linear probe" if probe_init else "the head trained alone"
            self._advise(f"fine-tuning the backbone did not beat {start} on the validation "
                         f"data, so the pretrained backbone was kept as it was")
        if fallback == "probe" and val is not None and \
                self.val_score_ is not None:  # type: ignore[attr-defined]
            self._probe_guard(train, val, full)
        elif full is not None and refit is True and \
                self.best_epoch_:  # type: ignore[attr-defined]
            self._refit(full)

    def _advise(self, line: str) -> None:
        self.advice_ = line if self.advice_ is None else f"{self.advice_}; {line}"
        if self.log is not None:
            self.log(line)

    def _probe_guard(self, train: Dataset, val: Dataset, full: Dataset | None) -> None:
        """Score the linear probe (``--strategy probe``, fitted on the same training data)
        on the same validation data; when fine-tuning does not beat it, the model is the
        probe (refitted on all the data when the validation data was held out of it)."""
        from transferkit.strategies.probe import ProbeClassifier

        def probe_on(data: Dataset) -> ProbeClassifier:
            bb = fresh_backbone(self.backbone, arch=self.arch, image_size=self.image_size,
                            device=self.device, precision=self.precision)
            return ProbeClassifier(backbone=bb, cache=self.cache, seed=self.seed,
                                   skip_bad=self.skip_bad,
                                   progress=self.progress if callable(self.progress) else None
                                   ).fit(data)

        probe = probe_on(train)
        p_val = float((probe.predict_proba(val).argmax(1) == val.labels).mean())
        ft_val = float(self.val_score_)
        self.probe_val_score_ = p_val
        # epoch 0 kept: fine-tuning the body did not help, and the best model of a frozen
        # backbone is the probe (its solver and C beat a few SGD epochs of the head)
        if ft_val > p_val and self.best_epoch_ != 0:
            self._advise(f"fine-tuning beat the linear probe on the validation data "
                         f"({ft_val:.3f} vs {p_val:.3f}): the fine-tuned model is kept")
            if full is not None and self.refit_ is True and self.best_epoch_:
                self._refit(full)
            return
        refit = full is not None and self.refit_ is not False
        if refit:
            probe = probe_on(full)
        n = len(full if refit else train)
        self.backbone_ = probe.backbone_
        self.model_ = TransferModel(probe.backbone_, probe.model_.head, list(self.classes_),
                                    info={**self.model_.info, "fallback": "probe",
                                          "C": probe.C_, "trainable_params": 0})
        self.val_score_ = p_val
        self.train_origins_ = list((full if refit else train).origins)
        why = (f"the linear probe scored {p_val:.3f} on the validation data and "
               f"fine-tuning's best epoch {ft_val:.3f}" if self.best_epoch_ != 0 else
               f"the backbone is best left as it was (the probe scored {p_val:.3f} on the "
               f"validation data, the head trained alone {ft_val:.3f})")
        self._advise(f"{why}: the model is the probe, fitted on {n} training {train.noun} "
                     f"('--strategy probe' gives it faster; fallback='none' keeps the "
                     f"fine-tuned model)")

    def _refit(self, full: Dataset) -> None:
        """Train again on all the data for the epochs the held-out data picked."""
        best = int(self.best_epoch_)
        note, val_score, history = self.holdout_note_, self.val_score_, self.history_
        advice, probe_val = self.advice_, self.probe_val_score_
        if self.log is not None:
            self.log(f"refit: training again on all {len(full)} {full.noun} for the "
                     f"{best} epoch(s) the held-out data picked")
        # the same weight-space mix as the held-out run picked (no data left to pick one)
        again = clone(self).set_params(holdout=0, refit=False, epochs=best, patience=0,
                                       fallback="none", wise=self.wise_alpha_)
        again.fit(full)
        for k, v in vars(again).items():
            if k.endswith("_"):
                setattr(self, k, v)
        self.holdout_note_, self.val_score_ = note, val_score
        self.advice_, self.probe_val_score_ = advice, probe_val
        self.history_ = [*history, *[{**r, "phase": f"refit {r['phase']}"}
                                     for r in again.history_]]
        self.best_epoch_ = best
