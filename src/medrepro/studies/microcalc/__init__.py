"""The microcalcification Detector and Segmentator (Valvano et al.): two patch CNNs that find, then segment,
microcalcifications in mammograms at 0.05 mm. The package holds the readers of INbreast and of a plain folder of
images with masks, the synthetic INbreast stand-in, resampling to the paper's pixel size, the patches with their four
classes in an SQLite database, the networks with same and valid convolutions and their training, dense inference,
the whole-mammogram model and its scores, and the paper's Table 1, claims and figures."""
