"""layercal analysis stage: CPU only, never imports torch."""
