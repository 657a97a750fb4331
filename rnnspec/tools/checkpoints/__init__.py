"""tools/checkpoints"""
