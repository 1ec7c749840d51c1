"""Mansilla, Milone, Ferrante: Learning deformable registration of medical images with anatomical constraints
(AC-RegNet), Neural Networks 2020.

One paper, one package. The workflow runs it in two parts that can be enabled
on their own: ``chest`` (Table 1: JSRT, Montgomery and Shenzhen, the four
RegNet variants against elastix and no registration) and ``cxr14`` (Sec. 5.3,
in :mod:`.cxr14`: multi-atlas segmentation, RCA quality control and the
cardiomegaly SVM on ChestX-ray14). They are one package because the
ChestX-ray14 part runs the registration part's networks, pre-alignment and
readers; as two studies that code would have to move below both.
"""
