"""Training workflows beyond tables: imaging (classification) and segmentation, behind `medai train`."""
