"""Dense matching: depth-map plans, stereo, scoring, depth maps and fusion."""
