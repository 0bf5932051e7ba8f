"""A controlled alignment study: a synthetic time-lapse world with a known reward.

``world`` defines the clips (in the model's latent space, so no VAE is
involved) and the reward written from that definition; ``runner`` pretrains a
base model on a mixture of good and bad clips, aligns it with each method
through the real training loop over several seeds, and scores held-out
prompts; ``report`` turns the scores into tables and plots with bootstrap
confidence intervals. Entry point: ``bench/alignment_study.py``.
"""
