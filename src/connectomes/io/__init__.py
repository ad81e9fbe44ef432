"""Layer 6, models in and out: load any checkpoint (a step folder, a reference state dict, a Hugging Face
folder) and export Hugging Face folders with their model card and remote code."""
