"""Population segmentation: Bridges to Health, Cambridge Multimorbidity Score, electronic frailty index."""
