"""`accelerate launch` configs: DDP, DeepSpeed ZeRO-2/3, FSDP (in the wheel as
`factory.accelerate_configs`)."""
