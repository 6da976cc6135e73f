"""What a model larger than the GPU costs when its linear layers are split between CPU and
GPU (HeteGen): layer shapes, measured device profiles, the placement, and the step price."""
