"""Pretrained encoders (one file each), the content-addressed feature cache and the encode job."""
