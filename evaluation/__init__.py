"""The paper's measurements, heatmap pictures and an inference command."""

MODEL_HELP = (
    "model folder: the trainer's exported model (written by DenseAV.save_pretrained) or one of "
    "its local checkpoints (<checkpoint.dir>/step-000001200)"
)
