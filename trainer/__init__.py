"""SFT and GRPO on TRL + peft, from groundcot Parquet runs, with the GRPO-SIF rewards; multi-turn GRPO for mgpo and aperture."""
