"""``python -m bot console``: a terminal chat with the tutor on the same core as in Slack
(store, runtime, turns, quizzes), for trying it with nothing but a model key."""
