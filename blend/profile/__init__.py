"""Stage 2, profile: tokenize a dataset's prompts once and measure them with SQL (lengths,
prefix sharing, request classes). The stage function is `stage.profile_dataset`."""
