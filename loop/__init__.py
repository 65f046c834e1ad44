"""loop: how much fine-tuning data, of what quality, do you need?"""

__version__ = "0.1.0"
