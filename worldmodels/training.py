"""The epoch loop stages 02 and 04 share: resume, a progress bar per epoch, Ctrl-C and
SIGTERM save mid-epoch, a NaN guard, a checkpoint and a CSV log row after every epoch, and
the curves at the end. A stage says what a batch is, what one training step does and how
an epoch is scored; this module does the rest the same way for both.
"""

import math
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from worldmodels.atomic import require_free_space
from worldmodels.checkpoints import (
    TrainingProgress,
    load_companion,
    refuse_to_replace,
    resume_training,
    save_training,
    training_checkpoint_bytes,
)
from worldmodels.curves import draw_curves
from worldmodels.errors import DataError
from worldmodels.interrupt import Interrupted, stop_requested
from worldmodels.logs import write_csv
from worldmodels.run_config import config_path, write_run_config


@dataclass
class EpochScore:
    """What a stage's scoring of a finished epoch gives the loop."""
    columns: dict[str, str]  # the log row's values (besides "epoch" and "seconds")
    held_out_loss: float  # saved in the checkpoint
    message: str  # printed under the progress bar


@dataclass
class TrainingRun:
    """One stage's training of one model into ``checkpoint_path`` (its log beside it, named
    by ``log_name``). ``weight`` names the count in each step's sums ("frames", "steps") by
    which the epoch's means are taken; ``made_from`` the fingerprints of the models its data
    came from; ``rng`` a numpy generator saved with the model (or None)."""
    checkpoint_path: Path
    log_name: str
    kind: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    columns: list[str]
    weight: str
    made_from: dict[str, str] = field(default_factory=dict)
    rng: np.random.Generator | None = None
    early_stop: int = 0  # stop after this many epochs without a better held-out loss (0: never)
    companion: torch.nn.Module | None = None  # a model trained beside (the M of a task-aware V), kept in the same checkpoint
    progress: TrainingProgress = field(default_factory=TrainingProgress)

    @property
    def log_path(self) -> Path:
        return self.checkpoint_path.with_name(self.log_name)

    def resume(self, restart: bool, init_from: str = "") -> None:
        """Go on from the checkpoint (or start anew: see checkpoints.resume_training), with
        the log rewritten as the checkpoint has it."""
        refuse_to_replace(self.checkpoint_path, [self.log_path], restart)
        resuming = self.checkpoint_path.exists() and not restart
        self.progress = resume_training(self.checkpoint_path, self.kind, self.model, self.optimizer, restart, self.columns,
                                        self.made_from, self.rng, init_from=init_from)
        if resuming and self.companion is not None:
            load_companion(self.checkpoint_path, self.companion)
        write_csv(self.log_path, self.columns, self.progress.log)

    def done(self, epochs: int) -> bool:
        """Whether ``epochs`` epochs are trained already, or training stopped early (said in
        one line if so)."""
        stalled = self.stalled()
        if self.progress.epoch >= epochs:
            print(f"{self.checkpoint_path} is already trained for {self.progress.epoch} epochs; pass --restart or more --epochs "
                  "to train again")
        elif stalled:
            print(stalled)
        return self.progress.epoch >= epochs or bool(stalled)

    def stalled(self) -> str:
        """Why training stops early ("" if it goes on): the last ``early_stop`` epochs of the
        log brought no held-out loss below the best before them. ``train`` then puts the best
        epoch's weights back, as it does when the last epoch ends past the best one."""
        losses = [float(row["held_out_loss"]) for row in self.progress.log]
        if not self.early_stop or len(losses) <= self.early_stop or min(losses[-self.early_stop:]) < min(losses[:-self.early_stop]):
            return ""
        best = self._best_epoch()
        return (f"{self.checkpoint_path}: stopped early, the held-out loss has not improved for {self.early_stop} epochs (best "
                f"{losses[best - 1]:.4g} in epoch {best} of {len(losses)})")

    def _best_epoch(self) -> int:
        """The epoch (from 1) of the log's best held-out loss (the earliest of equal ones)."""
        return int(np.argmin([float(row["held_out_loss"]) for row in self.progress.log])) + 1

    def record_settings(self, args: Any, script: str) -> None:
        """What this run was started with, as config.json beside its log."""
        write_run_config(config_path(self.log_path), args, script)

    def save(self, **extra: Any) -> None:
        if self.companion is not None:
            extra["companion"] = self.companion.state_dict()
        save_training(self.checkpoint_path, self.kind, self.model, self.optimizer, self.progress, self.rng,
                      made_from=self.made_from, **extra)

    def train(self, epochs: int, epoch_batches: Callable[[int], Iterable], batches_per_epoch: int,
              train_batch: Callable[[Any, int], dict[str, float]], score_epoch: Callable[[int, dict[str, float]], EpochScore],
              bar_per_epoch: bool = True) -> Path:
        """Train epochs progress.epoch + 1 .. ``epochs``; returns the curves' PNG.

        ``epoch_batches(epoch)`` gives that epoch's batches in a fixed order (after a stop the
        loop skips those done); ``train_batch(batch, epoch)`` makes one update and returns its
        sums (with the ``weight`` count); ``score_epoch(epoch, train_means)`` scores the epoch
        for the log. A NaN or inf in a step's sums stops training with the last good
        checkpoint kept. ``bar_per_epoch``: a lasting progress bar per epoch (few long
        epochs), else one over the epochs with a passing one per epoch (many short ones)."""
        checkpoint_bytes = training_checkpoint_bytes(self.model)
        epoch_bar = tqdm(range(self.progress.epoch + 1, epochs + 1), desc="epochs", dynamic_ncols=True, disable=bar_per_epoch)
        for epoch in epoch_bar:
            require_free_space(self.checkpoint_path.parent, checkpoint_bytes)  # not an epoch of training that cannot be saved
            started = time.time() - self.progress.seconds
            batches = islice(epoch_batches(epoch), self.progress.batch, None)  # after a stop: the epoch's order, from there
            bar = tqdm(batches, initial=self.progress.batch, total=max(1, batches_per_epoch), desc=f"epoch {epoch}/{epochs}",
                       leave=bar_per_epoch, dynamic_ncols=True, disable=not bar_per_epoch and batches_per_epoch < 2)
            for batch in bar:
                sums = train_batch(batch, epoch)
                bad = [key for key, value in sums.items() if not math.isfinite(value)]
                if bad:
                    raise DataError(f"{self.checkpoint_path}: {bad[0]} became {sums[bad[0]]} in epoch {epoch}; the last good "
                                    "checkpoint is kept; try a lower --lr")
                self.progress.add(**sums)
                self.progress.batch += 1
                bar.set_postfix(loss=f"{self.progress.sums['loss'] / self.progress.sums[self.weight]:.3g}")
                if stop_requested():
                    self.progress.seconds = time.time() - started
                    self.save()
                    raise Interrupted(f"{self.checkpoint_path} saved after batch {self.progress.batch} of epoch {epoch}; "
                                      "re-run to go on from there")
            if not self.progress.sums:
                raise DataError(f"{self.checkpoint_path}: no training batch in epoch {epoch}; add data or lower --batch-size")
            means = {k: v / self.progress.sums[self.weight] for k, v in self.progress.sums.items() if k != self.weight}
            score = score_epoch(epoch, means)
            row = {"epoch": str(epoch), **score.columns, "seconds": f"{time.time() - started:.1f}"}
            best_weights = self._best_weights(score.held_out_loss)
            self.progress = TrainingProgress(epoch=epoch, log=self.progress.log + [row], best_weights=best_weights)
            self.save(held_out_loss=float(score.held_out_loss))
            write_csv(self.log_path, self.columns, self.progress.log)
            epoch_bar.set_postfix(held_out=f"{score.held_out_loss:.3f}")
            tqdm.write(f"epoch {epoch}: {score.message}")
            if stalled := self.stalled():
                tqdm.write(f"{stalled}; {self._restore_best_weights()}")
                break
            if epoch == epochs and self.early_stop and (best := self._best_epoch()) < epoch:
                tqdm.write(f"{self.checkpoint_path}: the best held-out loss was epoch {best}'s; {self._restore_best_weights()}")
        return draw_curves(self.log_path)

    def _best_weights(self, held_out_loss: float) -> dict | None:
        """With early stopping, a copy of the best epoch's weights so far, the epoch just scored
        (``held_out_loss``) included; kept in the checkpoint, so that a resumed run can go back to them."""
        if not self.early_stop:
            return None
        earlier = [float(row["held_out_loss"]) for row in self.progress.log]
        if not earlier or held_out_loss < min(earlier):
            return {key: value.detach().clone() for key, value in self.model.state_dict().items()}
        return self.progress.best_weights  # None when the best epoch ran before checkpoints kept its weights

    def _restore_best_weights(self) -> str:
        """Put the best epoch's weights back in the model and its checkpoint (the log keeps every
        epoch); says which weights the checkpoint holds."""
        if self.progress.best_weights is None:
            return "the last epoch's weights are kept (this checkpoint did not keep the best epoch's)"
        self.model.load_state_dict(self.progress.best_weights)
        self.save(held_out_loss=min(float(row["held_out_loss"]) for row in self.progress.log))
        return "the best epoch's weights are kept"
