"""Generation engines behind one interface (vLLM, HF generate)."""
