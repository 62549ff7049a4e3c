"""USER-EDITABLE: combination and scaling functions. (Filled in by the rewards issue.)"""
