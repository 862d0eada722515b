"""Sampling: drawing tokens (temperature, top-k, top-p), the hand-fused step, its thread choice, and generation."""
