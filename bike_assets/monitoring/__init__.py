"""Monitoring: data drift (`drift`) and the retraining decision matrix (`retrain_decision`).

Import from the submodules; nothing is re-exported here so that importing the package stays cheap
(Evidently is only imported when drift is measured).
"""
