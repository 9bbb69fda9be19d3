"""Speech-to-face datasets in the official VOCASET and BIWI layouts: reading (``layout``,
``templates``), checking a folder (``check``) and a small synthetic dataset in the same layout
(``synthetic``). Run ``python -m training check-dataset`` / ``make-dataset``.
"""
