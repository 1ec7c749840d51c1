"""The microcalcification Detector and Segmentator (Valvano et al.): two patch CNNs that find, then segment,
microcalcifications in mammograms at 0.05 mm. The package holds the readers of INbreast and of a plain folder of
images with masks, the synthetic INbreast stand-in, resampling to the paper's pixel size, the patches with their
four classes, and the networks."""
