"""Famouri, Morra, Lamberti: A deep learning approach for efficient registration of dual view mammography,
ANNPR 2020 (LNCS 12294, pp. 162-172).

A spatial transformer network registers a breast's cranio-caudal (CC) view onto
its medio-lateral oblique (MLO) view: a ResNet50 trunk shared by both views,
a localisation network predicting an affine transform initialised to a
45-degree rotation, trained with the MSE masked to the views' overlap plus a
generalised-IoU term between the lesion boxes of the two views. Data: the
CBIS-DDSM CC/MLO pairs with a lesion on both views (:mod:`.readers`); the
reproduced numbers are the test set's box overlap rate (66.7% in the paper)
and the GIoU loss (Figs. 2-5).
"""
