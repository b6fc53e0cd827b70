"""tutorbot: an AI tutor that lives in Slack."""
