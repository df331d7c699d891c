"""Training: fine-tuning any registered model (finetune.fit), self-supervised pre-training
(pretrain.pretrain), their data, losses, sampling, augmentation, checkpoints and DDP.
`rimscope.train(...)` is the `rimscope train` command (train.command.train).
"""
from ..commands import callable_package

callable_package(__name__, "rimscope.train.command:train")  # rimscope.train(...) runs the command
