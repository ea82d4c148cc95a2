"""Classroom tooling, kept apart from the model library students read: the grader of lectures/exercises/."""
