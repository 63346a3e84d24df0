"""layercal extraction stage: model + benchmark -> activation store (needs torch)."""
