"""The steps of a training run, each on its own: fine-tune, choose the cut, calibrate, export, evaluate,
report, average (soups). They import only lower steps, training.data and training.config (make lint).
"""
