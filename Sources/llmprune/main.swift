print("llmprune")
