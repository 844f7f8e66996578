"""What users read: plans, facts, trust and apply progress as text, markdown, JSON, HTML."""
