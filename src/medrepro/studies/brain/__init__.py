"""WSSAMNet (Almahfouz Nasser et al.): weakly supervised, semantically attentive 3-D registration of post-resection
follow-up brain MRI to the pre-operative scan, on BraTS-Reg 2022, against ANTs SyN and VoxelMorph. The package holds
the BraTS-Reg reader and its synthetic stand-in, preprocessing to the working resolution, the networks (VoxelMorph,
WSSAMNet and WSSAMNet without attention) and their training, the ANTs baseline, landmark evaluation with the
challenge's metrics, submission files, and the paper's Table 1, claims and figures."""
