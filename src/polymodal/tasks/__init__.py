"""Tasks, one package each of one shape: config.py (torch-free) · data.py · fit.py · predict.py."""
