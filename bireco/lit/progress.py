"""The training progress bar, labelled with the stage.

Why: stages run by optimizer steps (`max_epochs=-1`), where Lightning's rich bar reads "Epoch 0/-2".
"""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar


class StageProgressBar(RichProgressBar):
    """Lightning's rich bar with "<stage> epoch N" where it would print "Epoch N/<max_epochs - 1>"."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def _get_train_description(self, current_epoch: int) -> str:
        text = f"{self.stage} epoch {current_epoch}"
        return f"{text:{len(self.validation_description)}}"  # padded like Lightning's, so the bars do not flicker
