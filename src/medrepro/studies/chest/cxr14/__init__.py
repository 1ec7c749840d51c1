"""Applications of the trained registration model to chest X-ray analysis (paper section 5.3).

Multi-atlas segmentation, reverse classification accuracy (RCA) quality
control, the cardiothoracic ratio, the balanced cardiomegaly cohort and its
cross-validated classification.
"""
