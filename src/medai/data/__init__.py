"""Datasets, patient-level splits and fitted preprocessing."""
