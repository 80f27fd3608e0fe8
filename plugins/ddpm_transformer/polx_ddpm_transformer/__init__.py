"""polx_ddpm_transformer: the Diffusion Policy transformer head and the DDPM objective for polx.

``plugin.py`` registers head ``ddpm_transformer`` (``head.py``) and objective ``ddpm``
(``objective.py``, schedules in ``schedule.py``); importing this package does not import torch.
"""

__version__ = "0.1.0"
