"""Medical LLM judge: client, prompt, cache, semantic similarity and the hybrid caption reward."""
