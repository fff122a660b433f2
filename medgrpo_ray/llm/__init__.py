"""Generic LLM access: an OpenAI-compatible chat transport (chat.py) that knows nothing about what is asked.

The only place `openai` is imported, and only inside functions, so importing the core stays light.
"""
