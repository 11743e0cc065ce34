"""The commands that run the steps on a run or model directory: train (and finish a run), export, calibrate,
truncation, soup. training.cli dispatches to them; nothing below imports them (make lint).
"""
