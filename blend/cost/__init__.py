"""The cost model: model and hardware specs (specs/*.json) and the per-request costs
(`model`), the per-step time model (`step_time`), and the price of weights kept off the GPU
(`offload`). Measured CPU step models are fitted in blend/calibration."""
