"""Body Animator: the HumanML3D skeleton, the procedural default, FloodDiffusion."""
