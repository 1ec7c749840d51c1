"""Stand-alone experiments of the study that are not part of model training."""
